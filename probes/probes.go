// Package probes counts what the kernel does for chosen threads: syscalls,
// copies by fd class, context switches, faults and CPU time. Two backends
// share one interface: eBPF tracepoints (exact; needs CAP_BPF and
// CAP_PERFMON, never kprobes or fentry) and a /proc sampler (no privileges,
// estimates, fewer fields).
package probes

import (
	"strings"
	"time"

	"github.com/copyscope/copyscope/metrics"
)

// Thread is one watched thread's cumulative counters.
type Thread struct {
	TID    int
	PID    int    // thread group id
	Comm   string // thread name at last sight
	Exited bool   // the thread is gone; its counts are final
	// Port is the local port of the socket the thread last moved data on,
	// 0 when unknown (EBPFOptions.TrackPorts).
	Port     int
	Counters metrics.Counters
}

// Reading is every watched thread's counters at one instant. A pseudo-thread
// with TID -pid (Exited) holds counts of threads of process pid that are no
// longer listed one by one.
type Reading struct {
	Time    time.Time
	Mode    metrics.Mode
	Threads map[int]Thread // by tid
	// Released lists threads that were reported exited in an earlier
	// reading and whose final counts moved, at this reading, into their
	// process's pseudo-thread -pid: they appear in no later reading, and a
	// consumer must not keep their counts separately as well.
	Released []int
}

// Probe is a running backend. Methods are safe for concurrent use.
type Probe interface {
	// Mode says whether counts are exact (ebpf) or estimates (proc).
	Mode() metrics.Mode
	// Measured is the set of metrics this probe actually measures.
	Measured() metrics.Field
	// Notes explains every metric that is degraded or missing, and why.
	Notes() []string
	// AddThreads starts counting the given threads.
	AddThreads(tids ...int) error
	// RemoveThreads stops counting the given threads and forgets them.
	RemoveThreads(tids ...int) error
	// AddProcesses counts every thread of the given processes, including
	// threads they create later. A pid that does not exist is an error.
	AddProcesses(pids ...int) error
	// AddCgroup counts every thread in the cgroup (v2 path).
	AddCgroup(path string) error
	// Read returns the cumulative counters of every watched thread seen so far.
	Read() (Reading, error)
	// Close detaches every program and frees every map; nothing stays
	// attached after it returns.
	Close() error
}

// ErrorSummary is an error's first line (a verifier log follows it in
// load errors), without cilium/ebpf's MEMLOCK hint: on kernels >= 5.11
// BPF memory is charged to the cgroup, so the hint only misleads. Every
// one-line report of a probe error uses it.
func ErrorSummary(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return strings.Replace(s, " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "", 1)
}
