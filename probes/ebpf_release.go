//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/copyscope/copyscope/metrics"
)

// Thread-exit release. Every per-thread map entry of a thread that has
// exited is folded into that thread's exited totals (p.exited) and deleted
// at the next Read: syscall slots when the kernel marks them exited
// (sched_process_exit), sched_counts entries when the kernel marks them
// dead (the thread's last switch), fault_counts and uring_counts entries
// once the thread is known to be gone. A thread that was not added by id
// is then reported exited, with its final counts, in one reading; at the
// reading after that its counts move into its process's pseudo-thread
// (TID -pid) and it is listed in Reading.Released. So kernel maps and the
// probe's own memory hold the live threads, plus one entry per process,
// whatever the thread churn.

// releaseKeep is how many readings a released thread's process is
// remembered, to attribute a late event (a disk read or io_uring
// completion that finishes after its thread exited).
const releaseKeep = 16

// releasedThread remembers where a released thread's counts went.
type releasedThread struct {
	pid int
	gen uint64
}

// goneProcess is the folded totals of a process's released threads.
type goneProcess struct {
	comm     string
	counters metrics.Counters
}

// foldExited adds counters read from a map entry of an exited thread to
// its exited totals.
func (p *ebpfProbe) foldExited(tid uint32, f func(c *metrics.Counters)) {
	e, ok := p.exited[int(tid)]
	if !ok {
		if r, ok := p.released[int(tid)]; ok {
			e.tgid = r.pid // a late event of a thread already released
		} else {
			ti := p.identify(int(tid))
			e.tgid, e.comm = ti.pid, ti.comm
		}
	}
	f(&e.counters)
	p.exited[int(tid)] = e
}

// gone reports whether a thread has exited: its slot or sched entry said
// so, or /proc no longer shows it alive.
func (p *ebpfProbe) gone(tid uint32) bool {
	if _, ok := p.exited[int(tid)]; ok {
		return true
	}
	return p.identify(int(tid)).exited
}

// readSched adds the sched_counts entries to the reading; entries marked
// dead are folded into their thread's exited totals and deleted.
// It returns the threads whose entry is still live.
func (p *ebpfProbe) readSched(now uint64, update func(uint32, func(*metrics.Counters))) (map[uint32]bool, error) {
	live := map[uint32]bool{}
	if p.schedCounts == nil {
		return live, nil
	}
	var dead []uint32
	var k uint32
	var x schedSchedCounters
	it := p.schedCounts.Iterate()
	for it.Next(&k, &x) {
		add := func(c *metrics.Counters) {
			// The kernel's own counters since the thread was first
			// seen switching (bpf/sched.bpf.c).
			c.CtxVoluntary += sub(x.Nvcsw, x.BaseNvcsw)
			c.CtxInvoluntary += sub(x.Nivcsw, x.BaseNivcsw)
			c.CPUNs += sub(x.Exec, x.BaseExec)
			if x.Dead == 0 && x.LastIn != 0 && now > x.LastIn {
				c.CPUNs += now - x.LastIn // the slice running now
			}
		}
		if x.Dead == 0 && p.lingering(k) {
			x.Dead = 1
		}
		if x.Dead != 0 {
			if _, ok := p.exited[int(k)]; !ok {
				// Known to the kernel even when /proc has forgotten it.
				p.exited[int(k)] = exitedThread{tgid: int(x.Tgid), comm: p.identify(int(k)).comm}
			}
			p.foldExited(k, add)
			dead = append(dead, k)
			continue
		}
		live[k] = true
		if _, ok := p.kernelID[int(k)]; !ok && x.Tgid != 0 {
			// Who it is, for when /proc has forgotten it first.
			p.kernelID[int(k)] = kernelIdentity{tgid: int(x.Tgid)}
		}
		update(k, add)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read sched_counts: %w", err)
	}
	return live, deleteKeys(p.schedCounts, dead)
}

// lingering reports whether a sched_counts entry not marked dead belongs
// to a thread that has exited and been reported so: its last switch was
// not seen (for example a program run the kernel skipped), so the entry is
// final and would otherwise hold its thread's release back forever.
func (p *ebpfProbe) lingering(tid uint32) bool {
	e, ok := p.exited[int(tid)]
	if !ok || !e.reported {
		return false
	}
	ti, err := readThreadInfo(int(tid))
	return err != nil || ti.exited || ti.pid != e.tgid
}

// readPerCPU adds a per-CPU counters map to the reading; entries of exited
// threads are folded into their exited totals and deleted.
func readPerCPU[V any](p *ebpfProbe, m *ebpf.Map, update func(uint32, func(*metrics.Counters)), add func(*metrics.Counters, []V)) error {
	if m == nil {
		return nil
	}
	var gone []uint32
	err := eachPerCPU(m, func(k uint32, v []V) {
		f := func(c *metrics.Counters) { add(c, v) }
		if p.gone(k) {
			p.foldExited(k, f)
			gone = append(gone, k)
			return
		}
		update(k, f)
	})
	if err != nil {
		return fmt.Errorf("read %v: %w", m, err)
	}
	return deleteKeys(m, gone)
}

func deleteKeys(m *ebpf.Map, keys []uint32) error {
	var errs []error
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("release exited thread %d from %v: %w", k, m, err))
		}
	}
	return errors.Join(errs...)
}

// addFaults sums one thread's per-CPU fault counters.
func addFaults(c *metrics.Counters, v []faultsFaultCounters) {
	for _, x := range v {
		c.PageFaults += x.UserFaults + x.KernelUserFaults
		c.FileFaults += x.FilemapFaults + x.MapPagesEvents
		c.PageCacheMisses += x.PageCacheAdds
		c.DiskReadBytes += x.DiskReadBytes
	}
}

// addUring sums one thread's per-CPU io_uring byte counters.
func addUring(c *metrics.Counters, v []iouringIoCounters) {
	for _, x := range v {
		addIO(c, x.ToUser, x.FromUser, x.Moved, x.Delivered, x.Received, x.Zerocopy, x.ZerocopyCopied)
	}
}

// addExited adds every exited thread's totals to the reading and releases
// those that were already reported exited and have nothing left in the
// kernel (schedLive: threads with a live sched_counts entry).
func (p *ebpfProbe) addExited(r *Reading, schedLive map[uint32]bool, update func(uint32, func(*metrics.Counters))) {
	p.gen++
	for tid, e := range p.exited {
		explicit := p.byThread[e.tgid][tid]
		if _, reused := r.Threads[tid]; e.reported && e.tgid == 0 && !reused && !schedLive[uint32(tid)] {
			// A late event of a thread nobody knows any more: reported
			// once, then left to the consumer to retire like any
			// thread that leaves the readings.
			delete(p.exited, tid)
			delete(p.info, tid)
			continue
		}
		// A live thread in this reading with the same id (reused) keeps
		// the identity maps; release once it has exited too.
		_, reused := r.Threads[tid]
		if e.reported && !explicit && !reused && !schedLive[uint32(tid)] && e.tgid > 0 {
			p.release(tid, e)
			r.Released = append(r.Released, tid)
			continue
		}
		update(uint32(tid), func(c *metrics.Counters) { *c = addAll(*c, e.counters) })
		e.reported = true
		p.exited[tid] = e
	}
	for pid, g := range p.goneProcs {
		c := g.counters
		c.Measured = p.measured
		r.Threads[-pid] = Thread{TID: -pid, PID: pid, Comm: g.comm, Exited: true, Counters: c}
	}
	for tid, rt := range p.released {
		if p.gen-rt.gen > releaseKeep {
			delete(p.released, tid)
		}
	}
}

// release moves an exited thread's totals into its process's.
func (p *ebpfProbe) release(tid int, e exitedThread) {
	g := p.goneProcs[e.tgid]
	if g == nil {
		g = &goneProcess{}
		p.goneProcs[e.tgid] = g
	}
	g.comm = e.comm
	g.counters = addAll(g.counters, e.counters)
	delete(p.exited, tid)
	delete(p.info, tid)
	delete(p.kernelID, tid)
	p.released[tid] = releasedThread{pid: e.tgid, gen: p.gen}
}

// addAll adds every counter of src to c, keeping c's measured set (the
// exited totals carry none of their own).
func addAll(c, src metrics.Counters) metrics.Counters {
	m := c.Measured
	r := c.Add(src)
	r.Measured = m
	return r
}
