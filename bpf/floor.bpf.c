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
