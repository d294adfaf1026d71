/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the syscall-aware programs share: x86_64 syscall numbers (the
 * exact mode classifies by the syscall returning, the low-cost mode by the
 * syscall the current thread is in) and the zerocopy test.
 */
#ifndef __COPYSCOPE_SYSNR_H__
#define __COPYSCOPE_SYSNR_H__

#include "common.h"

/* <linux/socket.h>: user space's ABI, fixed. */
#define MSG_ZEROCOPY 0x4000000

/* x86_64 numbers (asm/unistd_64.h). */
#define NR_read 0
#define NR_write 1
#define NR_pread64 17
#define NR_pwrite64 18
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_splice 275
#define NR_tee 276
#define NR_vmsplice 278
#define NR_preadv 295
#define NR_pwritev 296
#define NR_copy_file_range 326
#define NR_recvmmsg 299
#define NR_sendmmsg 307
#define NR_clone 56
#define NR_fork 57
#define NR_vfork 58
#define NR_clone3 435
#define NR_preadv2 327
#define NR_pwritev2 328

/* sock_zerocopy reports whether a socket has SO_ZEROCOPY set; without it
 * the kernel ignores MSG_ZEROCOPY and copies as usual. */
static __always_inline bool sock_zerocopy(struct sock *sk)
{
	if (!sk)
		return false;
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	return flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_ZEROCOPY));
}

#endif /* __COPYSCOPE_SYSNR_H__ */
