//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Syscalls and the bytes they move, per thread, from the two raw syscall
 * tracepoints (tp_btf: raw tracepoints with BTF-typed arguments, cheaper
 * than the classic ones and available under lockdown).
 *
 *   sys_exit:  count by (tid, syscall number) (or sys_enter does, see
 *              count_on_exit), and for the read/write/send/recv/sendfile/splice/tee/
 *              copy_file_range/vmsplice families, add the returned byte
 *              count to copied_to_user, copied_from_user, moved_in_kernel
 *              or zerocopy, by the class of the fd the bytes went through
 *              (the destination for sendfile/splice/tee/copy_file_range).
 *              Bytes onto sockets are also delivered, bytes off sockets
 *              received; /dev/null and /dev/zero copy nothing.
 *
 * Arguments are read at exit from the saved user registers (pt_regs di,
 * si, dx, r10, r8): the syscalls handled here never change them, so no
 * per-thread stash from sys_enter is needed. x86_64 syscall numbers only.
 */
#include "common.h"
#include "classes.h"
#include "sysnr.h"
#include "slots.h"

char __license[] SEC("license") = "GPL";

/* UAPI constants (<linux/socket.h>, <linux/in.h>, <linux/in6.h>,
 * <linux/errqueue.h>): user space's ABI, fixed. */
#define MSG_ERRQUEUE 0x2000
#define SOL_IP 0
#define SOL_IPV6 41
#define IP_RECVERR 11
#define IPV6_RECVERR 25
#define SO_EE_ORIGIN_ZEROCOPY 5
#define SO_EE_CODE_ZEROCOPY_COPIED 1

/* struct user_msghdr and struct mmsghdr as x86_64 user space lays them
 * out (<linux/socket.h>), to read fields of the caller's buffers. */
struct umsghdr {
	void *msg_name;
	int msg_namelen;
	void *msg_iov;
	__u64 msg_iovlen;
	void *msg_control;
	__u64 msg_controllen;
	unsigned int msg_flags;
};

struct ummsghdr {
	struct umsghdr msg_hdr;
	unsigned int msg_len; /* bytes of this message, written by the kernel */
};
_Static_assert(__builtin_offsetof(struct umsghdr, msg_control) == 32 && __builtin_offsetof(struct umsghdr, msg_controllen) == 40,
	       "struct user_msghdr layout");
_Static_assert(sizeof(struct ummsghdr) == 64 && __builtin_offsetof(struct ummsghdr, msg_len) == 56, "struct mmsghdr layout");

/* sendmmsg/recvmmsg return a message count; their bytes are the msg_len
 * fields the kernel wrote into the caller's struct mmsghdr array, read for
 * up to MAX_MMSG messages (the Go side names the limit in its note). */
enum mmsg_limits {
	MAX_MMSG = 64,
};
BTF_EMIT_ENUM(mmsg_limits);

/* Zerocopy send sizes remembered per socket (keyed by struct sock *), to
 * turn the kernel's notification id ranges back into bytes. */
#define ZC_RING 64

struct zc_ring {
	__u32 next_id; /* the socket's next zerocopy notification id, as last seen */
	__u32 pad;
	__u64 bytes[ZC_RING];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64); /* struct sock * */
	__type(value, struct zc_ring);
} zc_socks SEC(".maps");


/* Scratch zero values (maps, not stack: struct zc_ring is 528 bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct zc_ring);
} zc_zero SEC(".maps");


/* Weak: a kernel without it (before 6.2) takes the probe-read path. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* The address of a weak ksym is 0 when the kernel lacks it. */
#define ksym_exists(sym) (!!(sym))

/*
 * fd_file returns the struct file of fd in task t (the current thread).
 * The task and fd table are walked with direct loads (tp_btf programs may
 * dereference BTF pointers; the verifier turns them into fault-safe
 * loads). The fd array slot is a plain pointer, which BTF cannot type:
 * its address is cast (bpf_rdonly_cast, inlined by the verifier) to a
 * struct whose first member is a pointer, so it is read with one more
 * fault-safe load instead of a bpf_probe_read_kernel call.
 */
static __always_inline struct file *fd_file(struct task_struct *t, int fd)
{
	if (fd < 0)
		return 0;
	struct fdtable *fdt = t->files->fdt;
	if (!fdt || (unsigned int)fd >= fdt->max_fds)
		return 0;
	struct file **fds = fdt->fd;
	if (ksym_exists(bpf_rdonly_cast)) {
		struct list_head *slot = bpf_rdonly_cast(&fds[fd], bpf_core_type_id_kernel(struct list_head));
		return (struct file *)slot->next;
	}
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		count_drop(DROP_READ);
	return f;
}

/* file_class_fast is file_class with direct loads: f comes from a helper
 * read, so it is first cast (bpf_rdonly_cast) to a read-only BTF pointer. */
static __always_inline __u32 file_class_fast(struct file *f)
{
	if (!f)
		return CLASS_OTHER;
	if (!ksym_exists(bpf_rdonly_cast))
		return file_class(f);
	struct file *ff = bpf_rdonly_cast(f, bpf_core_type_id_kernel(struct file));
	struct inode *in = ff->f_inode;
	if (!in)
		return CLASS_OTHER;
	return mode_class(in->i_mode);
}

/* mkdev(1, 3) and mkdev(1, 5) in the kernel's dev_t: /dev/null, /dev/zero. */
#define DEV_NULL ((1U << 20) | 3)
#define DEV_ZERO ((1U << 20) | 5)

/*
 * nocopy_dev reports whether f is /dev/null or /dev/zero, for which the
 * kernel copies nothing: a write is discarded unread, a read is zero-filled
 * in place (clear_user). Their bytes are not copies; called only for fds of
 * class other, so sockets, files and pipes never pay for it.
 */
static __always_inline bool nocopy_dev(struct file *f)
{
	if (!f)
		return false;
	dev_t rdev = BPF_CORE_READ(f, f_inode, i_rdev);
	return rdev == DEV_NULL || rdev == DEV_ZERO;
}

static __always_inline struct sock *file_sock(struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : 0;
}

/*
 * Where syscalls are counted, set by the loader before loading (the
 * verifier drops the branch not taken):
 *   1: at return, in sys_exit, with no sys_enter program at all; exit and
 *      exit_group, which never return, are counted in process_exit. One
 *      tracepoint program per syscall instead of two: about half the cost.
 *   0: at entry, in sys_enter (every syscall entered, even one still
 *      blocked when read).
 */
volatile const __u8 count_on_exit = 1;

/*
 * Ports, set by the loader (the verifier drops what is off, so neither
 * costs anything unless asked for):
 *   track_ports:  each thread's slot keeps the local port of the last
 *                 socket it moved data on (watch --by port);
 *   filter_ports: socket bytes count only on sockets whose local or remote
 *                 port is set in the ports bitmap, file and pipe bytes only
 *                 for threads that moved data on such a socket (--port).
 */
volatile const __u8 track_ports = 0;
volatile const __u8 filter_ports = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 64);
	__type(key, __u32); /* port / 64 */
	__type(value, __u64);
} ports SEC(".maps");

static __always_inline bool port_set(__u16 port)
{
	__u32 w = port / 64;
	__u64 *bits = bpf_map_lookup_elem(&ports, &w);
	return bits && (*bits & (1ULL << (port % 64)));
}

/* port_counted reports whether bytes on socket file f count, and records
 * its local port in the thread's slot. */
static __always_inline bool port_counted(struct thread_stats *st, struct file *f)
{
	if (!track_ports && !filter_ports)
		return true;
	struct sock *sk = f ? file_sock(f) : 0;
	if (!sk)
		return !filter_ports;
	__u16 lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	__u16 rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport)) /* x86: little endian */;
	if (filter_ports && !port_set(lport) && !port_set(rport))
		return false;
	if (filter_ports)
		st->matched = 1;
	if (track_ports)
		st->port = lport;
	return true;
}

/* class_counted reports whether bytes through f (of class cls) count: on
 * a socket, as port_counted says; through a file or pipe, under the port
 * filter, only for a thread that has moved data on a kept socket (a
 * connection's thread serving that port), so copies per byte stay those
 * of the kept sockets' traffic. */
static __always_inline bool class_counted(struct thread_stats *st, __u32 cls, struct file *f)
{
	if (cls == CLASS_SOCKET)
		return port_counted(st, f);
	return !filter_ports || st->matched;
}

/*
 * copy_class classes the fd bytes went through and reports whether they
 * are counted: not for /dev/null or /dev/zero (nothing is copied), nor what
 * the port filter leaves out.
 */
static __always_inline bool copy_class(struct thread_stats *st, struct file *f, __u32 *cls)
{
	*cls = file_class_fast(f);
	if (*cls == CLASS_OTHER && nocopy_dev(f))
		return false;
	return class_counted(st, *cls, f);
}

/* add_to_user counts n bytes copied to user space: received too, when they
 * came off a socket. */
static __always_inline void add_to_user(struct io_counters *c, __u32 cls, __u64 n)
{
	c->to_user[CLASS_INDEX(cls)] += n;
	if (cls == CLASS_SOCKET)
		c->received += n;
}

static __always_inline void count_nr(struct thread_stats *st, long nr)
{
	__u32 i = nr == -1 ? SYS_NONE : (unsigned long)nr < SYS_OTHER ? (__u32)nr : SYS_OTHER;
	st->sys[i & (NSYS - 1)] += 1;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct thread_stats *st = thread_slot(bpf_get_current_task_btf());
	if (st)
		count_nr(st, id);
	return 0;
}

#define NR_exit 60
#define NR_exit_group 231

/*
 * exit and exit_group never return, so sys_exit never sees them; count
 * them when the thread that made them exits (its saved orig_ax still holds
 * the number). A thread killed while in another syscall has already
 * returned from it through sys_exit; one killed in user mode has orig_ax
 * -1 (set on every interrupt and exception entry).
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *p)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u32 tid = t->pid;
	__u32 *link = bpf_map_lookup_elem(&tid_slots, &tid);
	if (!link || !*link)
		return 0;
	__u32 slot = *link - 1;
	*link = 0; /* a thread that reuses the id starts afresh */
	struct thread_stats *st = bpf_map_lookup_elem(&thread_stats, &slot);
	if (!st || st->tid != tid)
		return 0;
	if (count_on_exit) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
		long nr = regs ? regs->orig_ax : -1;
		if (nr == NR_exit || nr == NR_exit_group)
			count_nr(st, nr);
	}
	/* The name at exit: a process that exec'd after its first syscall
	 * (a shell's child) is known by its new name. */
	bpf_get_current_comm(st->comm, sizeof(st->comm));
	barrier();
	st->state = SLOT_EXITED;
	return 0;
}

static __always_inline __u64 mmsg_bytes(void *vec, long msgs)
{
	__u64 total = 0;
	for (int i = 0; i < MAX_MMSG; i++) {
		if (i >= msgs)
			break;
		__u32 len = 0;
		if (bpf_probe_read_user(&len, sizeof(len), vec + i * sizeof(struct ummsghdr) + __builtin_offsetof(struct ummsghdr, msg_len))) {
			count_drop(DROP_READ);
			break;
		}
		total += len;
	}
	if (msgs > MAX_MMSG)
		count_drop(DROP_MMSG);
	return total;
}

static __always_inline void zc_sent(struct sock *sk, long ret)
{
	__u64 k = (__u64)sk;
	struct zc_ring *r = bpf_map_lookup_elem(&zc_socks, &k);
	if (!r) {
		__u32 zero = 0;
		struct zc_ring *z = bpf_map_lookup_elem(&zc_zero, &zero);
		if (!z)
			return;
		bpf_map_update_elem(&zc_socks, &k, z, BPF_NOEXIST);
		r = bpf_map_lookup_elem(&zc_socks, &k);
		if (!r)
			return;
	}
	/* Index by the kernel's own id for this send (sk_zckey was advanced
	 * past it), not by a count of the sends seen here: sends made before
	 * the thread was watched would otherwise shift every later range and
	 * credit notifications with the wrong sends' sizes. */
	__u32 id = (__u32)BPF_CORE_READ(sk, sk_zckey.counter) - 1;
	r->bytes[id % ZC_RING] = ret;
	r->next_id = id + 1;
}

/*
 * zc_notified reads the sock_extended_err a recvmsg(MSG_ERRQUEUE) just
 * returned and, for a zerocopy notification that says the kernel copied
 * (SO_EE_CODE_ZEROCOPY_COPIED), adds the bytes of the sends it covers.
 */
static __always_inline void zc_notified(struct io_counters *c, struct sock *sk, void *umsg)
{
	void *control = 0;
	__u64 controllen = 0;
	if (bpf_probe_read_user(&control, sizeof(control), umsg + __builtin_offsetof(struct umsghdr, msg_control)) ||
	    bpf_probe_read_user(&controllen, sizeof(controllen), umsg + __builtin_offsetof(struct umsghdr, msg_controllen)))
		return;
	/* A struct cmsghdr followed by a struct sock_extended_err. */
	struct {
		__u64 len;
		__s32 level;
		__s32 type;
		__u32 ee_errno;
		__u8 ee_origin;
		__u8 ee_type;
		__u8 ee_code;
		__u8 ee_pad;
		__u32 ee_info;
		__u32 ee_data;
	} cm;
	if (!control || controllen < sizeof(cm))
		return;
	if (bpf_probe_read_user(&cm, sizeof(cm), control))
		return;
	if (!((cm.level == SOL_IP && cm.type == IP_RECVERR) || (cm.level == SOL_IPV6 && cm.type == IPV6_RECVERR)))
		return;
	if (cm.ee_origin != SO_EE_ORIGIN_ZEROCOPY)
		return;
	c->zerocopy_notes += 1;
	if (!(cm.ee_code & SO_EE_CODE_ZEROCOPY_COPIED))
		return;
	__u64 k = (__u64)sk;
	struct zc_ring *r = bpf_map_lookup_elem(&zc_socks, &k);
	if (!r)
		return;
	__u32 n = cm.ee_data - cm.ee_info + 1;
	__u64 sum = 0;
	for (__u32 i = 0; i < ZC_RING; i++) {
		if (i >= n)
			break;
		sum += r->bytes[(cm.ee_info + i) % ZC_RING];
	}
	c->zerocopy_copied += sum;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct thread_stats *st = thread_slot(t);
	if (!st)
		return 0;
	/* orig_ax is -1 after rt_sigreturn (it restores the interrupted
	 * registers) and after a syscall seccomp or ptrace skipped. */
	long nr = regs->orig_ax;
	/* A new thread or process also "returns" from clone/fork (with 0)
	 * through this tracepoint, though it never entered: count the
	 * parent's return only. */
	bool child_return = ret == 0 && (nr == NR_clone || nr == NR_fork || nr == NR_vfork || nr == NR_clone3);
	if (count_on_exit && !child_return)
		count_nr(st, nr);
	if (ret < 0)
		return 0;
	int fd = (int)regs->di;
	__u32 cls;
	struct file *f;
	struct io_counters *c = &st->io;

	switch (nr) {
	case NR_read:
	case NR_pread64:
	case NR_readv:
	case NR_preadv:
	case NR_preadv2:
	case NR_recvfrom:
		if (ret == 0 || !copy_class(st, fd_file(t, fd), &cls))
			return 0;
		add_to_user(c, cls, ret);
		return 0;
	case NR_recvmsg:
		f = fd_file(t, fd);
		cls = file_class_fast(f);
		if (regs->dx & MSG_ERRQUEUE) {
			if (cls == CLASS_SOCKET)
				zc_notified(c, file_sock(f), (void *)regs->si);
			return 0;
		}
		if (ret > 0 && class_counted(st, cls, f))
			add_to_user(c, cls, ret);
		return 0;
	case NR_write:
	case NR_pwrite64:
	case NR_writev:
	case NR_pwritev:
	case NR_pwritev2:
	case NR_sendto:
	case NR_sendmsg: {
		if (ret == 0)
			return 0;
		f = fd_file(t, fd);
		if (!copy_class(st, f, &cls))
			return 0;
		if (cls == CLASS_SOCKET)
			c->delivered += ret;
		unsigned long flags = nr == NR_sendmsg ? regs->dx : nr == NR_sendto ? regs->r10 : 0;
		if ((flags & MSG_ZEROCOPY) && cls == CLASS_SOCKET) {
			struct sock *sk = file_sock(f);
			if (sock_zerocopy(sk)) {
				c->zerocopy += ret;
				c->zerocopy_sends += 1;
				zc_sent(sk, ret);
				return 0;
			}
		}
		c->from_user[CLASS_INDEX(cls)] += ret;
		return 0;
	}
	case NR_recvmmsg:
	case NR_sendmmsg: {
		if (ret == 0)
			return 0;
		__u64 bytes = mmsg_bytes((void *)regs->si, ret);
		f = fd_file(t, fd);
		cls = file_class_fast(f);
		if (!class_counted(st, cls, f))
			return 0;
		if (nr == NR_recvmmsg) {
			add_to_user(c, cls, bytes);
			return 0;
		}
		/* MSG_ZEROCOPY per message is not looked at: counted as copies. */
		c->from_user[CLASS_INDEX(cls)] += bytes;
		if (cls == CLASS_SOCKET)
			c->delivered += bytes;
		return 0;
	}
	case NR_sendfile: /* sendfile(out_fd, in_fd, ...) */
	case NR_tee:      /* tee(in, out, ...): out is si */
	case NR_vmsplice: /* vmsplice(pipe, ...) */
		if (ret == 0)
			return 0;
		f = fd_file(t, nr == NR_tee ? (int)regs->si : fd);
		cls = file_class_fast(f);
		break;
	case NR_splice:           /* splice(in, off_in, out, ...): out is dx */
	case NR_copy_file_range: /* copy_file_range(in, off_in, out, ...) */
		if (ret == 0)
			return 0;
		f = fd_file(t, (int)regs->dx);
		cls = file_class_fast(f);
		/* Bytes leave a socket only through splice(socket -> pipe). */
		if (nr == NR_splice && cls == CLASS_PIPE) {
			struct file *in = fd_file(t, fd);
			if (file_class_fast(in) == CLASS_SOCKET) {
				if (!port_counted(st, in))
					return 0;
				c->received += ret;
			}
		}
		break;
	default:
		return 0;
	}
	if (!class_counted(st, cls, f))
		return 0;
	c->moved[CLASS_INDEX(cls)] += ret;
	if (cls == CLASS_SOCKET)
		c->delivered += ret;
	return 0;
}
