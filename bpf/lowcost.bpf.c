//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The low-cost mode: bytes by transfer style from tracepoints that fire
 * only on socket and page-cache operations, never on every syscall.
 * Attaching any syscall tracepoint puts every thread of the machine on the
 * kernel's slow syscall path (the floor `bench --overhead --floor`
 * measures); these do not, so an unwatched thread pays nothing unless it
 * moves socket or file data, and then one program call per operation.
 *
 * The syscall the current thread is in (its saved orig_ax) says what kind
 * of move an event belongs to:
 *
 *   sock_send_length  (every socket send: write, send*, sendfile, splice)
 *       sendfile/splice -> moved in kernel, to a socket (exact)
 *       sendmsg/sendto with MSG_ZEROCOPY on a SO_ZEROCOPY socket -> zerocopy
 *       otherwise -> copied from user, to a socket (exact)
 *   sock_recv_length  (every socket receive through recvmsg: read, recv*)
 *       -> copied to user, from a socket (exact)
 *   tcp_rcv_space_adjust in splice (socket -> pipe receives, which skip
 *       recvmsg) -> moved in kernel into a pipe: what the reader consumed
 *       since its previous receive on the socket (estimate: a socket first
 *       seen counts from the connection's start)
 *   mm_filemap_get_pages in read/pread/readv/preadv
 *       -> copied to user, from a file: the pages of the request
 *       (estimate: whole pages, and a read of more than one batch of
 *       folios is counted once per batch)
 *
 * Not seen: syscall counts, writes into files, and io_uring operations
 * (their sends and receives are counted, as copies). Counters per thread
 * in the exact mode's slots (slots.h): two inlined array reads per event,
 * no map helper call.
 */
#include "common.h"
#include "classes.h"
#include "sysnr.h"
#include "slots.h"

char __license[] SEC("license") = "GPL";

#define PAGE_SIZE 4096

/*
 * Sampling (watch --cost low --duty N): the loader attaches these programs
 * for 1/N of every period and sets weight to N, so every count is added N
 * times and the totals are estimates of the whole period's. counting
 * opens and closes each window exactly (attaching and detaching take
 * milliseconds, which would widen a 10 ms window by 10-20%; measured):
 * the loader sets it after attaching and clears it before detaching.
 * window numbers the windows, so a receive base left from an earlier
 * window is not taken for this one's.
 */
const volatile __u64 weight = 1;
volatile __u32 counting = 1;
volatile __u64 window;

/* Bytes each TCP socket's reader had consumed at its previous receive,
 * and in which window. */
struct splice_base {
	__u64 consumed;
	__u64 window;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* struct sock * */
	__type(value, struct splice_base);
} splice_seq SEC(".maps");

/* task_nr is the syscall task t (the current thread) is in, or -1. */
static __always_inline long task_nr(struct task_struct *t, struct pt_regs **regs)
{
	*regs = (struct pt_regs *)bpf_task_pt_regs(t);
	return *regs ? (*regs)->orig_ax : -1;
}

/* slot_io returns the counters of task t (the current thread), or 0 when
 * it is not watched: two inlined array reads (tid_slots, thread_stats)
 * for a thread that has a slot, one more (the filter) for one that has
 * none. */
static __always_inline struct io_counters *slot_io(struct task_struct *t)
{
	struct thread_stats *st = thread_slot(t);
	return st ? &st->io : 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(low_send, struct sock *sk, int ret, int flags)
{
	if (!counting)
		return 0;
	/* flags is always 0 here (sock_sendmsg_nosec passes no flags), so
	 * the syscall says how the bytes came. */
	if (ret <= 0)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct io_counters *c = slot_io(t);
	if (!c)
		return 0;
	__u64 n = (__u64)ret * weight;
	c->delivered += n;
	struct pt_regs *regs;
	long nr = task_nr(t, &regs);
	switch (nr) {
	case NR_sendfile:
	case NR_splice:
		c->moved[CLASS_SOCKET] += n;
		return 0;
	case NR_sendmsg:
	case NR_sendto: {
		unsigned long fl = nr == NR_sendmsg ? regs->dx : regs->r10;
		if ((fl & MSG_ZEROCOPY) && sock_zerocopy(sk)) {
			c->zerocopy += n;
			c->zerocopy_sends += weight;
			return 0;
		}
		break;
	}
	}
	c->from_user[CLASS_SOCKET] += n;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(low_recv, struct sock *sk, int ret, int flags)
{
	if (!counting)
		return 0;
	if (ret <= 0)
		return 0;
	struct io_counters *c = slot_io(bpf_get_current_task_btf());
	if (!c)
		return 0;
	__u64 n = (__u64)ret * weight;
	c->received += n;
	c->to_user[CLASS_SOCKET] += n;
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(low_splice_recv, struct sock *sk)
{
	if (!counting)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct io_counters *c = slot_io(t);
	if (!c)
		return 0;
	/* What the application has consumed since the connection began:
	 * received minus still queued (rcv_nxt - copied_seq). */
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 got = BPF_CORE_READ(tp, bytes_received);
	__u32 queued = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	struct splice_base now = {.consumed = got > queued ? got - queued : 0, .window = window};
	__u64 k = (__u64)sk;
	struct splice_base *last = bpf_map_lookup_elem(&splice_seq, &k);
	/* Every receive of a watched thread moves the base (recvmsg too), so
	 * a splice counts only what it took itself. A socket not seen yet, or
	 * a new connection at a freed socket's address, counts from its start;
	 * when sampling, such a socket and one last seen in an earlier window
	 * count nothing (what it took before was taken unwatched). */
	__u64 d = now.consumed;
	if ((last && last->window != now.window) || (!last && weight > 1))
		d = 0;
	else if (last && now.consumed >= last->consumed)
		d = now.consumed - last->consumed;
	if (last)
		*last = now;
	else
		bpf_map_update_elem(&splice_seq, &k, &now, BPF_ANY);
	struct pt_regs *regs;
	if (task_nr(t, &regs) != NR_splice || !d)
		return 0;
	c->received += d * weight;
	c->moved[CLASS_PIPE] += d * weight;
	return 0;
}

SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(low_file_read, void *mapping, unsigned long index, unsigned long last_index)
{
	if (!counting)
		return 0;
	if (last_index < index)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	struct io_counters *c = slot_io(t);
	if (!c)
		return 0;
	struct pt_regs *regs;
	switch (task_nr(t, &regs)) {
	case NR_read:
	case NR_pread64:
	case NR_readv:
	case NR_preadv:
	case NR_preadv2:
		break;
	default:
		return 0;
	}
	c->to_user[CLASS_FILE] += (last_index - index + 1) * PAGE_SIZE * weight;
	return 0;
}
