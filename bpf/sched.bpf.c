//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Context switches and on-CPU time per thread, from sched_switch (tp_btf:
 * the raw tracepoint hands over prev and next as task_struct pointers).
 *
 * The scheduler keeps exact per-thread counters of its own: nvcsw and
 * nivcsw (voluntary and involuntary switches, what /proc status shows) and
 * se.sum_exec_runtime (CPU time, what CLOCK_THREAD_CPUTIME_ID and schedstat
 * read). It brings them up to date just before this tracepoint fires, so
 * every switch of a watched thread samples them: the first sighting is the
 * base, the latest sighting the current value, and the reader reports the
 * difference. Classifying switches from the tracepoint arguments instead
 * gets sleeps cut short by a signal wrong (they arrive as TASK_RUNNING),
 * and timing slices with bpf_ktime_get_ns misses the time the scheduler
 * charges around the tracepoint (about 4% on a thread that sleeps every
 * 20 us); both were measured against /proc before this design.
 *
 * A thread on CPU at a reading has last_in set (its switch-in time), and
 * the reader adds now - last_in for the running slice.
 *
 * A thread's last switch (prev_state TASK_DEAD, at the very end of its
 * exit) marks its entry dead: its counts are final, and the reader folds
 * them into the thread's exited totals and deletes the entry, so the map
 * holds only threads alive at the last reading whatever the thread churn.
 * A new thread that gets the id of a dead entry not yet read is not
 * counted here (a drop, DROP_REUSED): that takes pid_max thread creations
 * within one reading interval.
 */
#include "common.h"

char __license[] SEC("license") = "GPL";

struct sched_counters {
	__u64 base_exec;   /* se.sum_exec_runtime at first sight */
	__u64 exec;        /* se.sum_exec_runtime at the latest switch */
	__u64 base_nvcsw;  /* nvcsw at first sight */
	__u64 nvcsw;       /* nvcsw at the latest switch */
	__u64 base_nivcsw; /* nivcsw at first sight */
	__u64 nivcsw;      /* nivcsw at the latest switch */
	__u64 last_in;     /* bpf_ktime_get_ns at switch-in, 0 when off CPU */
	__u32 tgid;        /* the thread's process, for the reader once it is gone */
	__u32 dead;        /* 1 after the thread's last switch: counts are final */
};

/* include/linux/sched.h: the state of a task switching away for good. */
#define TASK_DEAD 0x80

/* One value per thread, not per CPU: a thread is switched by one CPU at a
 * time, so its entry has one writer at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32); /* tid */
	__type(value, struct sched_counters);
} sched_counts SEC(".maps");

static __always_inline struct sched_counters *sighting(struct task_struct *t, __u32 tid)
{
	struct sched_counters *c = bpf_map_lookup_elem(&sched_counts, &tid);
	if (c && c->dead) {
		count_drop(DROP_REUSED);
		return 0;
	}
	if (c)
		return c;
	struct sched_counters first = {
		.base_exec = t->se.sum_exec_runtime,
		.base_nvcsw = t->nvcsw,
		.base_nivcsw = t->nivcsw,
		.tgid = t->tgid,
	};
	bpf_map_update_elem(&sched_counts, &tid, &first, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&sched_counts, &tid);
	if (!c)
		count_drop(DROP_MAP_FULL);
	return c;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 tid = prev->pid;
	struct sched_counters *c;

	/* prev is still current here. */
	if (tid && watched_current(bpf_get_current_pid_tgid())) {
		c = sighting(prev, tid);
		if (c) {
			c->exec = prev->se.sum_exec_runtime;
			c->nvcsw = prev->nvcsw;
			c->nivcsw = prev->nivcsw;
			c->last_in = 0;
			if (prev_state & TASK_DEAD)
				c->dead = 1;
		}
	}
	tid = next->pid;
	if (tid && watched_task(next, next->tgid, tid)) {
		c = sighting(next, tid);
		if (c) {
			c->exec = next->se.sum_exec_runtime;
			c->nvcsw = next->nvcsw;
			c->nivcsw = next->nivcsw;
			c->last_in = bpf_ktime_get_ns();
		}
	}
	return 0;
}
