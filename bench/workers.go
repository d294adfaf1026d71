package bench

import (
	"strconv"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
	"golang.org/x/sys/unix"
)

// ioWorkerCPU is the CPU time so far of the io_uring worker threads the
// kernel runs for owner's rings: the threads of this process named
// iou-wrk-<owner>. io_uring hands them the operations it cannot complete
// inline (SPLICE always, here), so the data thread's own clock misses that
// work; bench adds it to the data thread's CPU (WorkerCPUNs says how much).
// A worker that exits during a run takes its time with it (io_uring keeps
// idle workers for seconds, longer than a run's gaps).
func ioWorkerCPU(owner int) uint64 {
	tids, err := procfs.Self().Tasks()
	if err != nil {
		return 0
	}
	name := "iou-wrk-" + strconv.Itoa(owner)
	var total uint64
	for _, t := range tids {
		if comm, err := procfs.SelfThread(t).Comm(); err != nil || comm != name {
			continue
		}
		var ts unix.Timespec
		if unix.ClockGettime(threadCPUClock(t), &ts) == nil {
			total += uint64(ts.Nano())
		}
	}
	return total
}

// readData reads a data thread's counters with its io_uring workers' CPU
// folded into CPUNs, and returns the workers' part too.
func readData(tc ThreadCounters, tid int) (metrics.Counters, uint64, error) {
	c, err := tc.Read(tid)
	if err != nil {
		return c, 0, err
	}
	w := ioWorkerCPU(tid)
	if c.Measured.Has(metrics.FCPU) {
		c.CPUNs += w
	}
	return c, w, nil
}

// workerDelta is the workers' CPU over a run (0 when workers exited and
// took more than the new ones used).
func workerDelta(before, after uint64) *uint64 {
	if after <= before {
		return nil
	}
	d := after - before
	return &d
}
