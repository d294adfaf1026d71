//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Following new work in the kernel, the way servers are built: a daemon
 * that forks per connection, a supervisor that execs its workers.
 *
 *   sched_process_fork: a new process (not a thread) whose parent is
 *       watched whole gets its own bit in watched_tgids before it first
 *       runs, so it is counted from its first syscall (follow_children).
 *       Any other new process clears its bit: one set for an earlier
 *       process with the same id is stale, so a reused id is not watched.
 *       (Not at exit: a process's threads still switch out for the last
 *       time after its exit tracepoint, and those switches must count.)
 *   sched_process_exec: a process that execs into the watched command
 *       name is watched from its first syscall in the new program.
 *
 * Bits are set with atomic ORs: the programs run on any CPU at once.
 */
#include "common.h"

char __license[] SEC("license") = "GPL";

#define TASK_COMM_LEN 16

struct follow_cfg {
	__u32 children; /* 1: follow new processes of watched processes */
	__u32 by_comm;  /* 1: watch processes that exec into comm */
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct follow_cfg);
} follow SEC(".maps");

static __always_inline struct follow_cfg *follow_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&follow, &zero);
}

static __always_inline struct tgid_bits *tgid_word(__u32 tgid)
{
	__u32 w = tgid / 64;
	return bpf_map_lookup_elem(&watched_tgids, &w);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(follow_fork, struct task_struct *parent, struct task_struct *child)
{
	struct follow_cfg *cfg = follow_cfg();
	if (!cfg)
		return 0;
	__u32 tgid = child->tgid;
	if (child->pid != tgid)
		return 0; /* a new thread: its process's bit already covers it */
	struct tgid_bits *cb = tgid_word(tgid);
	if (!cb)
		return 0;
	__u64 bit = 1ULL << (tgid % 64);
	struct tgid_bits *pb = cfg->children ? tgid_word((__u32)parent->tgid) : 0;
	if (pb && (pb->all & (1ULL << ((__u32)parent->tgid % 64))))
		__sync_fetch_and_or(&cb->all, bit);
	else if (cb->all & bit)
		__sync_fetch_and_and(&cb->all, ~bit); /* stale: an earlier process's */
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(follow_exec, struct task_struct *p, pid_t old_pid, void *bprm)
{
	struct follow_cfg *cfg = follow_cfg();
	if (!cfg || !cfg->by_comm)
		return 0;
	char comm[TASK_COMM_LEN];
	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (comm[i] != cfg->comm[i])
			return 0;
		if (!comm[i])
			break;
	}
	__u32 tgid = p->tgid;
	struct tgid_bits *b = tgid_word(tgid);
	if (b)
		__sync_fetch_and_or(&b->all, 1ULL << (tgid % 64));
	return 0;
}
