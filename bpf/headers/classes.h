/* SPDX-License-Identifier: GPL-2.0 */
/* fd classes (metrics.FdClass order) and the inode-mode test behind them. */
#ifndef __COPYSCOPE_CLASSES_H__
#define __COPYSCOPE_CLASSES_H__

#include "common.h"

/* The class of the fd bytes went through; probes checks that the Go
 * metrics.FdClass values are these. */
enum fd_class {
	CLASS_FILE,
	CLASS_SOCKET,
	CLASS_PIPE,
	CLASS_OTHER,
	NUM_CLASSES,
};
BTF_EMIT_ENUM(fd_class);

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFIFO 0010000

/* Bytes per fd class (index CLASS_*), per thread. */
struct io_counters {
	__u64 to_user[NUM_CLASSES];
	__u64 from_user[NUM_CLASSES];
	__u64 moved[NUM_CLASSES];
	__u64 delivered;       /* bytes onto socket fds, by any means */
	__u64 zerocopy;        /* sent with MSG_ZEROCOPY on a SO_ZEROCOPY socket */
	__u64 zerocopy_sends;  /* such sends that returned > 0 */
	__u64 zerocopy_copied; /* of zerocopy bytes, the kernel copied anyway */
	__u64 zerocopy_notes;  /* zerocopy completion notifications read */
	__u64 received;        /* bytes off socket fds, by any means */
};

/* CLASS_INDEX bounds a class for the verifier as an index into the
 * per-class arrays (NUM_CLASSES is a power of two). */
#define CLASS_INDEX(c) ((c) & (NUM_CLASSES - 1))
_Static_assert((NUM_CLASSES & (NUM_CLASSES - 1)) == 0, "NUM_CLASSES must be a power of two for CLASS_INDEX");

/* mode_class is the one rule from an inode's mode to its fd class. */
static __always_inline __u32 mode_class(umode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return CLASS_FILE;
	case S_IFSOCK:
		return CLASS_SOCKET;
	case S_IFIFO:
		return CLASS_PIPE;
	}
	return CLASS_OTHER;
}

static __always_inline __u32 file_class(struct file *f)
{
	if (!f)
		return CLASS_OTHER;
	return mode_class(BPF_CORE_READ(f, f_inode, i_mode));
}

#endif /* __COPYSCOPE_CLASSES_H__ */
