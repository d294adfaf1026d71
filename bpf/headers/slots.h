/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-thread counter slots, shared by the objects that count bytes per
 * thread (syscalls.bpf.c in the exact mode, lowcost.bpf.c in the low-cost
 * mode). Each object declares the maps; the Go loader creates them once
 * and hands the same maps to every object that declares them.
 */
#ifndef __COPYSCOPE_SLOTS_H__
#define __COPYSCOPE_SLOTS_H__

#include "common.h"
#include "classes.h"

/*
 * Per-thread counters live in slots of one array (thread_stats), found
 * through a second array indexed by thread id (tid_slots: slot + 1, 0 for
 * none). Both lookups are array reads the verifier inlines, so a watched
 * event costs no map helper call at all; the per-CPU hashes keyed by
 * (tid, syscall) and tid used before cost two hash lookups per syscall
 * (and the low-cost mode's per-CPU hash by tid cost it most of its
 * programs' run time). Only the thread itself writes its slot (every
 * program that does runs in its context, one CPU at a time), so plain
 * increments are exact.
 *
 * A watched thread claims a free slot (popped from free_slots) at its
 * first counted event; at exit (sched_process_exit, in syscalls.bpf.c,
 * attached in both modes) its slot is marked SLOT_EXITED and unlinked from
 * tid_slots, and the reader collects the final counts and pushes the slot
 * back. thread_stats is mmap'able: the reader reads it without syscalls.
 */
/* Indexes of sys[]: the syscall numbers 0..509 by number, then two
 * special entries. */
enum sys_index {
	SYS_OTHER = 510, /* any other number (x32, out of range) */
	SYS_NONE = 511,  /* -1 (orig_ax after rt_sigreturn) */
	NSYS = 512,      /* entries in sys[] */
};
BTF_EMIT_ENUM(sys_index);

/* Who a slot belongs to; the reader decodes the same values. */
enum slot_state {
	SLOT_FREE,
	SLOT_LIVE,
	SLOT_EXITED,
};

struct thread_stats {
	enum slot_state state; /* written last when a slot changes hands */
	__u32 tid;
	__u32 tgid;
	__u16 port;    /* local port of the socket last moved data on (track_ports) */
	__u8 matched;  /* moved data on a socket the port filter keeps (filter_ports) */
	__u8 pad;
	char comm[16]; /* at the first counted syscall, then at exit */
	struct io_counters io;
	__u64 sys[NSYS];
};

/* Slot + 1 by thread id; resized by the loader to the kernel's pid_max. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_MAX_LIMIT);
	__type(key, __u32);
	__type(value, __u32);
} tid_slots SEC(".maps");

/* Slots (4.2 KiB each); the loader may resize (EBPFOptions.MaxThreads). */
#define MAX_SLOTS 4096

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct thread_stats);
} thread_stats SEC(".maps");

/* Free slot numbers; the loader fills it, the reader refills it. */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, MAX_SLOTS);
	__type(value, __u32);
} free_slots SEC(".maps");

/* A zeroed thread_stats to reset a slot with (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread_stats);
} stats_zero SEC(".maps");

/* Keep the compiler from moving memory accesses across this point. */
#define barrier() asm volatile("" ::: "memory")

/*
 * claim_slot gives the current (watched) thread a zeroed slot, or returns
 * 0 when none is free. Runs once per thread: out of line.
 */
static __attribute__((noinline)) struct thread_stats *claim_slot(__u32 *link, __u32 tid, __u32 tgid)
{
	__u32 slot;
	if (bpf_map_pop_elem(&free_slots, &slot)) {
		count_drop(DROP_MAP_FULL);
		return 0;
	}
	__u32 zero = 0;
	struct thread_stats *z = bpf_map_lookup_elem(&stats_zero, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&thread_stats, &slot, z, BPF_ANY);
	struct thread_stats *st = bpf_map_lookup_elem(&thread_stats, &slot);
	if (!st)
		return 0;
	st->tid = tid;
	st->tgid = tgid;
	bpf_get_current_comm(st->comm, sizeof(st->comm));
	barrier();
	st->state = SLOT_LIVE;
	*link = slot + 1;
	return st;
}

/*
 * thread_slot returns the current thread's counters, claiming a slot at
 * its first counted event, or 0 when the thread is not watched. A slot whose
 * owner is another process means its thread exited unseen (no
 * sched_process_exit program) and the id was reused: retire it.
 */
static __always_inline struct thread_stats *thread_slot(struct task_struct *t)
{
	__u32 tid = t->pid;
	__u32 *link = bpf_map_lookup_elem(&tid_slots, &tid);
	if (!link) {
		/* pid_max was raised after the probes loaded. */
		if (watched_current(((__u64)t->tgid << 32) | tid))
			count_drop(DROP_TID);
		return 0;
	}
	__u32 slot = *link;
	if (slot) {
		slot -= 1;
		struct thread_stats *st = bpf_map_lookup_elem(&thread_stats, &slot);
		if (st && st->tgid == (__u32)t->tgid && st->tid == tid)
			return st;
		if (st && st->state == SLOT_LIVE && st->tid == tid)
			st->state = SLOT_EXITED;
		*link = 0;
	}
	__u32 tgid = t->tgid;
	if (!watched_current(((__u64)tgid << 32) | tid))
		return 0;
	return claim_slot(link, tid, tgid);
}

#endif /* __COPYSCOPE_SLOTS_H__ */
