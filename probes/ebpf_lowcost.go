//go:build linux && amd64

package probes

import (
	"github.com/copyscope/copyscope/metrics"
)

// The low-cost mode (bpf/lowcost.bpf.c): bytes by transfer style from
// socket and page-cache tracepoints instead of the syscall tracepoints,
// whose mere attachment slows every syscall of every thread. Context
// switches and CPU time still come from sched_switch; syscall counts,
// faults and writes into files are not measured.

// lowCostMeasured is what the low-cost mode measures (some of it as
// estimates, see lowCostNote).
const lowCostMeasured = metrics.FDelivered | metrics.FReceived | metrics.FCopiedToUser | metrics.FCopiedFromUser |
	metrics.FMovedInKernel | metrics.FZerocopy | metrics.FCopyClasses | metrics.FCtxSwitches | metrics.FCPU

// lowCostNote says which low-cost figures are estimates and what is absent.
const lowCostNote = "low-cost mode (--cost low): no syscall tracepoint is attached; bytes sent and received on sockets and how (copied, by reference, zerocopy) are exact; " +
	"bytes copied to user from files are estimates (whole pages per read request), bytes received by splice are estimates (a socket first seen counts from its connection's start; when sampled, from its next splice); " +
	"syscall counts, page faults and copies into files are not measured"

// lowCostPrograms are the low-cost mode's own programs.
func lowCostPrograms() []progDesc {
	return []progDesc{
		{obj: "lowcost", name: lowcostProgLowSend, group: "sock", event: "sock_send_length", btf: true, required: true,
			fields: metrics.FDelivered | metrics.FCopiedFromUser | metrics.FMovedInKernel | metrics.FZerocopy},
		{obj: "lowcost", name: lowcostProgLowRecv, group: "sock", event: "sock_recv_length", btf: true, required: true,
			fields: metrics.FReceived | metrics.FCopiedToUser},
		{obj: "lowcost", name: lowcostProgLowSpliceRecv, group: "tcp", event: "tcp_rcv_space_adjust", btf: true,
			lost: "bytes received by splice from TCP sockets are not counted"},
		{obj: "lowcost", name: lowcostProgLowFileRead, group: "filemap", event: "mm_filemap_get_pages", btf: true,
			lost: "bytes read from files into user memory are not counted"},
	}
}

// selectCost keeps the programs of one cost level: the exact set, or the
// low-cost programs plus sched_switch, process following and the
// syscalls object's sched_process_exit, which marks an exited thread's
// slot (the low-cost programs count into the same slots, and the syscalls
// object owns the filter and slot maps).
func selectCost(low bool, descs []progDesc) []progDesc {
	if !low {
		return descs
	}
	out := lowCostPrograms()
	for _, d := range descs {
		switch {
		case d.obj == "sched" || d.obj == "follow":
			out = append(out, d)
		case d.name == syscallsProgProcessExit:
			d.only = countAny
			d.lost = "exited threads' slots are recycled only when the thread id is reused or the thread is read gone from /proc"
			out = append(out, d)
		}
	}
	return out
}
