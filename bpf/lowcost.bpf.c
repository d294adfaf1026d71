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

/* Bytes each TCP socket's reader had consumed at its previous receive. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* struct sock * */
	__type(value, __u64);
} splice_seq SEC(".maps");

/* current_nr is the syscall the current thread is in, or -1. */
static __always_inline long current_nr(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return regs ? regs->orig_ax : -1;
}

/* low_counters returns the current thread's counters, or 0 when it is not
 * watched: two inlined array reads (tid_slots, thread_stats) for a thread
 * that has a slot, one more (the filter) for one that has none. */
static __always_inline struct io_counters *low_counters(void)
{
	struct thread_stats *st = thread_slot(bpf_get_current_task_btf());
	return st ? &st->io : 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(low_send, struct sock *sk, int ret, int flags)
{
	/* flags is always 0 here (sock_sendmsg_nosec passes no flags), so
	 * the syscall says how the bytes came. */
	if (ret <= 0)
		return 0;
	struct io_counters *c = low_counters();
	if (!c)
		return 0;
	c->delivered += ret;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = regs ? regs->orig_ax : -1;
	switch (nr) {
	case NR_sendfile:
	case NR_splice:
		c->moved[CLASS_SOCKET] += ret;
		return 0;
	case NR_sendmsg:
	case NR_sendto: {
		unsigned long fl = nr == NR_sendmsg ? regs->dx : regs->r10;
		if ((fl & MSG_ZEROCOPY) && sock_zerocopy(sk)) {
			c->zerocopy += ret;
			c->zerocopy_sends += 1;
			return 0;
		}
		break;
	}
	}
	c->from_user[CLASS_SOCKET] += ret;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(low_recv, struct sock *sk, int ret, int flags)
{
	if (ret <= 0)
		return 0;
	struct io_counters *c = low_counters();
	if (!c)
		return 0;
	c->received += ret;
	c->to_user[CLASS_SOCKET] += ret;
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(low_splice_recv, struct sock *sk)
{
	struct io_counters *c = low_counters();
	if (!c)
		return 0;
	/* What the application has consumed since the connection began:
	 * received minus still queued (rcv_nxt - copied_seq). */
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 got = BPF_CORE_READ(tp, bytes_received);
	__u32 queued = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	__u64 consumed = got > queued ? got - queued : 0;
	__u64 k = (__u64)sk;
	__u64 *last = bpf_map_lookup_elem(&splice_seq, &k);
	/* Every receive of a watched thread moves the base (recvmsg too), so
	 * a splice counts only what it took itself. A socket not seen yet, or
	 * a new connection at a freed socket's address, counts from its start. */
	__u64 d = consumed;
	if (last && consumed >= *last)
		d = consumed - *last;
	if (last)
		*last = consumed;
	else
		bpf_map_update_elem(&splice_seq, &k, &consumed, BPF_ANY);
	if (current_nr() != NR_splice || !d)
		return 0;
	c->received += d;
	c->moved[CLASS_PIPE] += d;
	return 0;
}

SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(low_file_read, void *mapping, unsigned long index, unsigned long last_index)
{
	if (last_index < index)
		return 0;
	struct io_counters *c = low_counters();
	if (!c)
		return 0;
	switch (current_nr()) {
	case NR_read:
	case NR_pread64:
	case NR_readv:
	case NR_preadv:
	case NR_preadv2:
		break;
	default:
		return 0;
	}
	c->to_user[CLASS_FILE] += (last_index - index + 1) * PAGE_SIZE;
	return 0;
}
