//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Context switches and on-CPU time per thread, from sched_switch (tp_btf:
 * the raw tracepoint gives the preempt flag directly).
 *
 * A switch away from a watched thread is voluntary or involuntary as the
 * kernel itself counted it: the scheduler bumps task->nvcsw or ->nivcsw
 * just before the tracepoint, so the one that moved since switch-in says
 * which (the tracepoint's preempt/prev_state cannot tell a yield from a
 * sleep interrupted by a pending signal; both arrive as TASK_RUNNING). For
 * a thread first seen running, preempt/prev_state decide.
 *
 * On-CPU time is the growth of the kernel's own CPU clock for the thread
 * (se.sum_exec_runtime, what CLOCK_THREAD_CPUTIME_ID and schedstat read)
 * from switch-in to switch-out: the scheduler brings it up to date before
 * the tracepoint fires. Timestamps alone would miss the few microseconds
 * per switch that the kernel charges around the tracepoint (about 4% on a
 * thread that sleeps every 20 us). Each slice is kept in the CPU's slot of
 * a per-CPU value (a thread runs on one CPU from switch-in to switch-out);
 * last_in stays set while the thread is on CPU, so the reader adds the
 * running slice as now - last_in.
 */
#include "common.h"

char __license[] SEC("license") = "GPL";

struct sched_counters {
	__u64 voluntary;
	__u64 involuntary;
	__u64 cpu_ns;
	__u64 last_in;     /* bpf_ktime_get_ns at switch-in, 0 when off CPU */
	__u64 exec_at_in;  /* se.sum_exec_runtime at switch-in */
	__u64 nvcsw_at_in; /* nvcsw at switch-in */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_THREADS);
	__type(key, __u32); /* tid */
	__type(value, struct sched_counters);
} sched_counts SEC(".maps");

static const struct sched_counters sched_zero;

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = 0;
	__u32 tid = prev->pid;
	struct sched_counters *c;

	/* prev is still current here. */
	if (tid && watched_current(bpf_get_current_pid_tgid())) {
		c = lookup_or_init(&sched_counts, &tid, &sched_zero);
		if (c) {
			now = bpf_ktime_get_ns();
			bool voluntary = !preempt && prev_state != 0;
			if (c->last_in)
				voluntary = prev->nvcsw != c->nvcsw_at_in;
			if (voluntary)
				c->voluntary += 1;
			else
				c->involuntary += 1;
			if (c->last_in) {
				__u64 exec = prev->se.sum_exec_runtime;
				if (exec >= c->exec_at_in)
					c->cpu_ns += exec - c->exec_at_in;
				c->last_in = 0;
			}
		}
	}
	tid = next->pid;
	if (tid && watched_task(next, next->tgid, tid)) {
		c = lookup_or_init(&sched_counts, &tid, &sched_zero);
		if (c) {
			if (!now)
				now = bpf_ktime_get_ns();
			c->last_in = now;
			c->exec_at_in = next->se.sum_exec_runtime;
			c->nvcsw_at_in = next->nvcsw;
		}
	}
	return 0;
}
