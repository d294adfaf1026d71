//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * io_uring operations do not appear as syscalls: count their bytes from
 * the io_uring tracepoints instead (tp_btf: they fire once per operation
 * in every io_uring user, so no trace record is built for them).
 *
 *   io_uring_submit_req: a watched thread submitted req; remember who.
 *   io_uring_complete:   req finished with res bytes; add them to the
 *                        submitter's io_counters by opcode and by the
 *                        class of req->file (CO-RE): reads copy to user,
 *                        writes and sends copy from user, SEND_ZC is
 *                        zerocopy, SPLICE and TEE move pages in the kernel.
 *
 * Completions can run on io-wq workers or in interrupt context; they are
 * attributed to the submitting thread, in this object's own per-CPU map
 * (completions on other CPUs must not race with the submitter's syscall
 * counters); the reader adds it to the thread's syscall bytes.
 *
 * uring_ops counts every op of a watched submitter by opcode: submitted,
 * completed, failed (res < 0) and bytes (res > 0). SEND_ZC notifications
 * are separate CQEs of a separate request with the send's user_data: the
 * send's completion (flagged CQE_F_MORE) leaves its bytes in uring_zc
 * under (ring, user_data); the notification takes them and, when it
 * carries IORING_NOTIF_USAGE_ZC_COPIED, counts them as zerocopy_copied.
 */
#include "common.h"
#include "classes.h"

char __license[] SEC("license") = "GPL";

/* enum io_uring_op values (uapi, stable). */
#define OP_READV 1
#define OP_WRITEV 2
#define OP_READ_FIXED 4
#define OP_WRITE_FIXED 5
#define OP_SENDMSG 9
#define OP_RECVMSG 10
#define OP_READ 22
#define OP_WRITE 23
#define OP_SEND 26
#define OP_RECV 27
#define OP_SPLICE 30
#define OP_TEE 33
#define OP_SEND_ZC 47
#define OP_SENDMSG_ZC 48
#define OP_READ_MULTISHOT 49
#define OP_READV_FIXED 60
#define OP_WRITEV_FIXED 61

#define IORING_CQE_F_MORE (1U << 1)
#define IORING_CQE_F_NOTIF (1U << 3)
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)

/* Opcodes counted one by one in uring_ops (enum io_uring_op has ~60). */
enum uring_ops_limits { URING_MAX_OP = 64 };

struct uring_op_key {
	__u32 tid;
	__u32 op;
};

struct uring_op_counts {
	__u64 submitted;
	__u64 completed;
	__u64 failed;
	__u64 bytes;
};

struct uring_zc_key {
	__u64 ring;
	__u64 user_data;
};

struct uring_zc_val {
	__u32 tid;
	__u32 pad;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, struct uring_op_key);
	__type(value, struct uring_op_counts);
} uring_ops SEC(".maps");

/* SEND_ZC sends of watched threads awaiting their notification. The
 * kernel (6.10+) stacks the notifications of consecutive sends on one
 * socket and may post none until the stream pauses: a raw 1 GiB stream of
 * 4 KiB sends kept tens of thousands pending, and a 16,384-entry map
 * forgot 73% of them (bench: "copied 26.6%" on loopback, where the kernel
 * copies all). 131,072 entries (~11 MiB of kernel memory) cover a 512 MiB
 * stream of 4 KiB sends; beyond that the oldest are forgotten and
 * zerocopy_copied_bytes reads low. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct uring_zc_key);
	__type(value, struct uring_zc_val);
} uring_zc SEC(".maps");

static const struct uring_op_counts op_zero;

static __always_inline struct uring_op_counts *op_counts(__u32 tid, __u8 op)
{
	struct uring_op_key k = {.tid = tid, .op = op < URING_MAX_OP ? op : URING_MAX_OP};
	return lookup_or_init(&uring_ops, &k, &op_zero);
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32); /* tid */
	__type(value, struct io_counters);
} uring_counts SEC(".maps");

/* Requests submitted by watched threads, until their last completion. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* struct io_kiocb * */
	__type(value, __u32); /* submitting tid */
} uring_reqs SEC(".maps");

static const struct io_counters uring_zero;

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(uring_submit, struct io_kiocb *r)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!watched_current(pid_tgid))
		return 0;
	__u64 req = (__u64)r;
	__u32 tid = (__u32)pid_tgid;
	bpf_map_update_elem(&uring_reqs, &req, &tid, BPF_ANY);
	struct uring_op_counts *oc = op_counts(tid, BPF_CORE_READ(r, opcode));
	if (oc)
		oc->submitted += 1;
	return 0;
}

/* A SEND_ZC notification: count the bytes of its send as copied if the
 * kernel says it copied them. */
static __always_inline int uring_notif(__u64 ring, __u64 user_data, __s32 res)
{
	struct uring_zc_key k = {.ring = ring, .user_data = user_data};
	struct uring_zc_val *v = bpf_map_lookup_elem(&uring_zc, &k);
	if (!v)
		return 0;
	__u32 tid = v->tid;
	__u64 bytes = v->bytes;
	bpf_map_delete_elem(&uring_zc, &k);
	struct io_counters *c = lookup_or_init(&uring_counts, &tid, &uring_zero);
	if (!c)
		return 0;
	c->zerocopy_notes += 1;
	if ((__u32)res & IORING_NOTIF_USAGE_ZC_COPIED)
		c->zerocopy_copied += bytes;
	return 0;
}

/*
 * A CQE that found the CQ ring full goes to the ring's overflow list
 * instead (io_uring_complete does not fire for it). SEND_ZC notifications
 * do that in bursts (a corked response's all at once): count them here.
 * Other overflowed completions carry no request, so their bytes are lost
 * to the counts; the paths size their CQ rings to avoid it.
 */
SEC("tp_btf/io_uring_cqe_overflow")
int BPF_PROG(uring_overflow, void *ring, __u64 user_data, __s32 res, __u32 cflags, void *ocqe)
{
	if (!(cflags & IORING_CQE_F_NOTIF))
		return 0;
	return uring_notif((__u64)ring, user_data, res);
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(uring_complete, void *ring, void *reqp, struct io_uring_cqe *cqe)
{
	__u64 req = (__u64)reqp;
	if (!req || !cqe)
		return 0;
	__u32 cflags = BPF_CORE_READ(cqe, flags);
	if (cflags & IORING_CQE_F_NOTIF)
		return uring_notif((__u64)ring, BPF_CORE_READ(cqe, user_data), BPF_CORE_READ(cqe, res));
	__u32 *tidp = bpf_map_lookup_elem(&uring_reqs, &req);
	if (!tidp)
		return 0;
	__u32 tid = *tidp;
	if (!(cflags & IORING_CQE_F_MORE))
		bpf_map_delete_elem(&uring_reqs, &req);
	__s32 res32 = BPF_CORE_READ(cqe, res);
	struct io_kiocb *r = (struct io_kiocb *)req;
	__u8 op = BPF_CORE_READ(r, opcode);
	struct uring_op_counts *oc = op_counts(tid, op);
	if (oc) {
		oc->completed += 1;
		if (res32 < 0)
			oc->failed += 1;
		else
			oc->bytes += res32;
	}
	if ((op == OP_SEND_ZC || op == OP_SENDMSG_ZC) && (cflags & IORING_CQE_F_MORE)) {
		struct uring_zc_key k = {.ring = (__u64)ring, .user_data = BPF_CORE_READ(cqe, user_data)};
		struct uring_zc_val v = {.tid = tid, .bytes = res32 > 0 ? res32 : 0};
		bpf_map_update_elem(&uring_zc, &k, &v, BPF_ANY);
	}
	if (res32 <= 0)
		return 0;
	__u64 res = res32;
	__u32 cls = file_class(BPF_CORE_READ(r, file)) & 3;
	struct io_counters *c = lookup_or_init(&uring_counts, &tid, &uring_zero);
	if (!c)
		return 0;
	switch (op) {
	case OP_READV:
	case OP_READ_FIXED:
	case OP_RECVMSG:
	case OP_READ:
	case OP_RECV:
	case OP_READ_MULTISHOT:
	case OP_READV_FIXED:
		c->to_user[cls] += res;
		if (cls == CLASS_SOCKET)
			c->received += res;
		break;
	case OP_WRITEV:
	case OP_WRITE_FIXED:
	case OP_SENDMSG:
	case OP_WRITE:
	case OP_SEND:
	case OP_WRITEV_FIXED:
		c->from_user[cls] += res;
		if (cls == CLASS_SOCKET)
			c->delivered += res;
		break;
	case OP_SEND_ZC:
	case OP_SENDMSG_ZC:
		c->zerocopy += res;
		c->zerocopy_sends += 1;
		c->delivered += res;
		break;
	case OP_SPLICE:
	case OP_TEE:
		c->moved[cls] += res;
		if (cls == CLASS_SOCKET)
			c->delivered += res;
		break;
	}
	return 0;
}
