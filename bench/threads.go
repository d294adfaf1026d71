package bench

import (
	"fmt"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
	"golang.org/x/sys/unix"
)

// ThreadCounters reads the cumulative counters of threads of this process.
// It is the seam between bench and the probes: /proc thread counters until
// an eBPF probe is given (ProbeCounters).
type ThreadCounters interface {
	// Mode says whether counts are exact (ebpf) or estimates (proc).
	Mode() metrics.Mode
	// Watch starts counting the threads.
	Watch(tids ...int) error
	// Read returns a thread's cumulative counters.
	Read(tid int) (metrics.Counters, error)
	// Unwatch stops counting the threads.
	Unwatch(tids ...int)
}

// ProcCounters reads a thread's CPU clock and /proc/self/task/<tid>/
// {status,stat}: CPU time, voluntary and involuntary context switches and page faults. It
// needs no privileges; syscalls and copies it cannot see.
func ProcCounters() ThreadCounters { return procCounters{} }

type procCounters struct{}

func (procCounters) Mode() metrics.Mode { return metrics.ModeProc }
func (procCounters) Watch(...int) error { return nil }
func (procCounters) Unwatch(...int)     {}
func (procCounters) Read(tid int) (metrics.Counters, error) {
	return readProcThread(tid)
}

// readProcThread reads one thread's CPU time, context switches and faults.
func readProcThread(tid int) (metrics.Counters, error) {
	var c metrics.Counters
	// The thread's CPU clock, not schedstat: schedstat lags for a thread
	// that is running (it is updated at ticks and switches).
	var ts unix.Timespec
	if err := unix.ClockGettime(threadCPUClock(tid), &ts); err != nil {
		return c, fmt.Errorf("read thread %d cpu clock: %w (is the thread still alive, and in this process?)", tid, err)
	}
	c.CPUNs = uint64(ts.Nano())
	d := procfs.SelfThread(tid)
	status, err := d.Status()
	if err != nil {
		return c, fmt.Errorf("read thread %d status: %w", tid, err)
	}
	c.CtxVoluntary, c.CtxInvoluntary = status.VoluntaryCtxt, status.NonvoluntaryCtxt
	stat, err := d.Stat()
	if err != nil {
		return c, fmt.Errorf("read thread %d stat: %w", tid, err)
	}
	c.PageFaults = stat.MinFlt + stat.MajFlt
	c.Measured = metrics.FCPU | metrics.FCtxSwitches | metrics.FPageFaults
	return c, nil
}

// threadCPUClock is the clock id of a thread's CPU time (what
// pthread_getcpuclockid returns): CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD with
// the inverted tid in the upper bits.
func threadCPUClock(tid int) int32 {
	return int32(^uint32(tid)<<3 | 6)
}

// ProbeCounters counts threads with a running probe (eBPF or the probes
// package's /proc sampler).
func ProbeCounters(p probes.Probe) ThreadCounters { return probeCounters{p} }

type probeCounters struct{ p probes.Probe }

func (pc probeCounters) Mode() metrics.Mode      { return pc.p.Mode() }
func (pc probeCounters) Watch(tids ...int) error { return pc.p.AddThreads(tids...) }
func (pc probeCounters) Unwatch(tids ...int)     { _ = pc.p.RemoveThreads(tids...) }
func (pc probeCounters) Read(tid int) (metrics.Counters, error) {
	r, err := pc.p.Read()
	if err != nil {
		return metrics.Counters{}, fmt.Errorf("read probe counters: %w", err)
	}
	th, ok := r.Threads[tid]
	if !ok {
		// Not seen yet: nothing counted so far.
		return metrics.Counters{Measured: pc.p.Measured()}, nil
	}
	c := th.Counters
	c.Measured &= pc.p.Measured()
	return c, nil
}
