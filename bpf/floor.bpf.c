//go:build ignore

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The floor: a sys_exit program that does nothing. Attaching any program
 * to a syscall tracepoint puts every thread on the kernel's slow syscall
 * path and adds one program call per syscall; `copyscope bench --overhead
 * --floor` attaches this instead of the probes to measure that price
 * alone, which no syscall-counting tool can go below on a kernel that
 * allows only tracepoints.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "GPL";

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_sys_exit, struct pt_regs *regs, long ret)
{
	return 0;
}

/*
 * The low-cost mode's floor: empty programs on the tracepoints the
 * low-cost mode attaches (bpf/lowcost.bpf.c and sched_switch). What they
 * cost is the kernel's price for a program call at each socket send and
 * receive, page-cache read and context switch.
 */
SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/tcp_rcv_space_adjust")
int BPF_PROG(floor_rcv_space, struct sock *sk)
{
	return 0;
}

SEC("tp_btf/mm_filemap_get_pages")
int BPF_PROG(floor_file_read, void *mapping, unsigned long index, unsigned long last_index)
{
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(floor_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	return 0;
}
