package probes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
)

// procMeasured is what the /proc backend can count. Delivered bytes,
// copies, zerocopy, file faults, page cache misses and disk reads need the
// fd class or the fault kind, which /proc does not give per thread.
const procMeasured = metrics.FSyscalls | metrics.FPageFaults | metrics.FCtxSwitches | metrics.FCPU

// procNotes explains the /proc backend's estimates. The rchar/wchar
// findings were checked on Linux 6.18 (see TaskIO).
func procNotes() []string {
	return []string{
		"proc mode: every figure is an estimate sampled from /proc/<pid>/task/<tid>; run as root for exact eBPF counts (copyscope doctor says what is missing)",
		"syscalls = syscr+syscw from /proc/<tid>/io: a lower bound that counts only the read/write family (read, readv, pread*, write, writev, pwrite*, sendfile, copy_file_range); send*/recv*, splice, mmap, futex, epoll and every other syscall are not counted; mode_switches inherit the same bound",
		"delivered bytes, copies by fd class, zerocopy, file faults, page cache misses and disk reads are not measured in proc mode (absent, not zero)",
		"page_faults = minflt+majflt from /proc/<tid>/stat; ctx switches from /proc/<tid>/status; cpu_ns from /proc/<tid>/schedstat (the scheduler's exact run time), or utime+stime in clock ticks where schedstat is missing",
		"threads that exit between two samples: their syscalls, page faults and cpu_ns (to 10 ms) are recovered from the process-wide /proc/<pid>/io and stat (a pseudo-thread -pid), their context switches since the last sample are lost; eBPF counts every thread exactly",
	}
}

// procTask is one sample of one thread.
type procTask struct {
	comm     string
	zombie   bool
	counters metrics.Counters
	io       procfs.IO
	ioErr    error
}

// procReadTask samples one thread. An error procfs.Gone reports means
// the thread is gone.
func procReadTask(pid, tid int) (procTask, error) {
	var t procTask
	c := &t.counters
	c.Measured = procMeasured
	d := procfs.Thread(pid, tid)

	st, err := d.Stat()
	if err != nil {
		return t, err
	}
	t.comm, t.zombie = st.Comm, st.Exited()
	c.PageFaults = st.MinFlt + st.MajFlt

	status, err := d.Status()
	if err != nil {
		return t, err
	}
	c.CtxVoluntary, c.CtxInvoluntary = status.VoluntaryCtxt, status.NonvoluntaryCtxt

	run, err := d.SchedRunNs()
	if err != nil {
		if _, serr := d.Stat(); procfs.Gone(serr) {
			return t, serr
		}
		// No CONFIG_SCHED_INFO (no schedstat) or unreadable: fall back
		// to tick-granular utime+stime.
		run = procfs.TicksToNs(st.UTime + st.STime)
	}
	c.CPUNs = run

	t.io, t.ioErr = d.IO()
	switch {
	case t.ioErr == nil:
		c.Syscalls = t.io.SyscR + t.io.SyscW
	case procfs.Gone(t.ioErr):
		return t, t.ioErr
	default:
		c.Measured &^= metrics.FSyscalls
	}
	return t, nil
}

// procTgid returns the thread group id of any thread id.
func procTgid(tid int) (int, error) {
	st, err := procfs.AnyTask(tid).Status()
	return st.Tgid, err
}

// procThread is what the /proc backend remembers about one thread.
type procThread struct {
	pid      int
	comm     string
	exited   bool
	last     metrics.Counters // last sample, cumulative since the thread began
	baseline metrics.Counters // counts before it was first watched
}

// procProbe is the /proc backend of Probe.
type procProbe struct {
	mu      sync.Mutex
	closed  bool
	procs   map[int]bool // pids watched whole
	tids    map[int]bool // threads watched one by one
	cgroups []string     // cgroup v2 directories, rescanned at every Read
	threads map[int]*procThread
	// residual holds, per process watched whole, what its threads that
	// exited unseen did (see procResidual).
	residual map[int]*procResidual
	notes    []string
}

// procResidual is a watched process's count of syscalls, faults and CPU
// time (to a clock tick) of threads that exited unseen (born and gone between two samples) or after
// their last sample: the process-wide io and stat files (which keep the
// counts of exited threads) minus every thread's own last sample. It is
// reported as a pseudo-thread with TID -pid, Exited, so process totals do
// not read low on thread-per-request servers. It never decreases.
type procResidual struct {
	comm      string
	raw, base metrics.Counters // Syscalls, PageFaults and CPUNs only
}

// procAggregate reads a process's whole-group syscr+syscw and faults,
// which include those of its exited threads.
func procAggregate(pid int) (metrics.Counters, error) {
	var c metrics.Counters
	st, err := procfs.Process(pid).Stat()
	if err != nil {
		return c, err
	}
	c.Measured = metrics.FSyscalls | metrics.FPageFaults | metrics.FCPU
	c.PageFaults = st.MinFlt + st.MajFlt
	// The process's utime+stime is its whole run time (exited threads
	// included) cut to clock ticks: at most one tick below the truth.
	c.CPUNs = procfs.TicksToNs(st.UTime + st.STime)
	io, err := procfs.Process(pid).IO()
	switch {
	case err == nil:
		c.Syscalls = io.SyscR + io.SyscW
	case procfs.Gone(err):
		return c, err
	default:
		c.Measured &^= metrics.FSyscalls
	}
	return c, nil
}

// seenLocked sums the last samples of every thread of pid seen so far.
func (p *procProbe) seenLocked(pid int) metrics.Counters {
	var c metrics.Counters
	for _, pt := range p.threads {
		if pt.pid == pid {
			c.Syscalls += pt.last.Syscalls
			c.PageFaults += pt.last.PageFaults
			c.CPUNs += pt.last.CPUNs
		}
	}
	return c
}

// residualLocked returns what pid's aggregate holds beyond its seen threads.
func (p *procProbe) residualLocked(pid int, agg metrics.Counters) metrics.Counters {
	seen := p.seenLocked(pid)
	r := agg.Sub(seen)
	r.Measured = agg.Measured
	return r
}

// OpenProc returns the /proc backend: no privileges needed, estimates only
// (see Notes), a sample of /proc/<pid>/task/<tid>/{io,stat,status,schedstat}
// at every Read. Counts start when a thread is first watched; threads that
// appear later in a watched process or cgroup count from their start. For
// each process watched whole, a pseudo-thread with TID -pid (Exited) holds
// the syscalls, faults and CPU time of threads that exited unseen.
func OpenProc() (Probe, error) {
	if _, err := os.Stat(procfs.Self().Path("task")); err != nil {
		return nil, fmt.Errorf("open /proc backend: %w (mount procfs: mount -t proc proc /proc)", err)
	}
	return &procProbe{
		procs:    map[int]bool{},
		tids:     map[int]bool{},
		threads:  map[int]*procThread{},
		residual: map[int]*procResidual{},
	}, nil
}

// Mode reports ModeProc: every count is an estimate.
func (p *procProbe) Mode() metrics.Mode { return metrics.ModeProc }

// Measured is syscalls (a lower bound), page faults, context switches and
// CPU time.
func (p *procProbe) Measured() metrics.Field { return procMeasured }

// Notes says what the /proc estimates mean and what they miss.
func (p *procProbe) Notes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(procNotes(), p.notes...)
}

// track starts remembering a thread, with a baseline when it existed
// before it was watched.
func (p *procProbe) trackLocked(pid, tid int, baseline bool) error {
	if _, ok := p.threads[tid]; ok {
		return nil
	}
	t, err := procReadTask(pid, tid)
	if err != nil {
		return err
	}
	if t.ioErr != nil {
		p.noteLocked(procIONote(tid, t.comm, t.ioErr))
	}
	pt := &procThread{pid: pid, comm: t.comm, last: t.counters}
	if baseline {
		pt.baseline = t.counters
	}
	p.threads[tid] = pt
	return nil
}

// AddThreads counts the given threads only.
func (p *procProbe) AddThreads(tids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add threads: probe is closed")
	}
	for _, tid := range tids {
		pid, err := procTgid(tid)
		if err != nil {
			if procfs.Gone(err) {
				return fmt.Errorf("no such thread: %d (is the thread id right and the thread alive?)", tid)
			}
			return fmt.Errorf("watch thread %d: %w", tid, err)
		}
		if err := p.trackLocked(pid, tid, true); err != nil {
			return fmt.Errorf("watch thread %d of process %d: %w", tid, pid, err)
		}
		p.tids[tid] = true
	}
	return nil
}

// RemoveThreads stops counting the given threads and forgets them.
func (p *procProbe) RemoveThreads(tids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("remove threads: probe is closed")
	}
	for _, tid := range tids {
		delete(p.tids, tid)
		if t, ok := p.threads[tid]; ok && !p.procs[t.pid] {
			delete(p.threads, tid)
		}
	}
	return nil
}

// AddProcesses counts every thread of the given processes, present and
// future. A pid that is not a live process is an error.
func (p *procProbe) AddProcesses(pids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add processes: probe is closed")
	}
	for _, pid := range pids {
		tgid, err := procTgid(pid)
		if err != nil {
			if procfs.Gone(err) {
				return fmt.Errorf("no such process: %d", pid)
			}
			return fmt.Errorf("watch process %d: %w", pid, err)
		}
		if tgid != pid {
			return fmt.Errorf("watch process %d: %d is a thread of process %d, not a process (watch %d, or the thread alone)", pid, pid, tgid, tgid)
		}
		tids, err := procfs.Process(pid).Tasks()
		if err != nil {
			if procfs.Gone(err) {
				return fmt.Errorf("no such process: %d", pid)
			}
			return fmt.Errorf("watch process %d: list threads: %w", pid, err)
		}
		lead, err := procReadTask(pid, pid)
		if err == nil && lead.zombie {
			return fmt.Errorf("no such process: %d (it has exited and awaits its parent)", pid)
		}
		// The aggregate first: read after the threads it could only be
		// larger, which would count live work as exited work.
		agg, aggErr := procAggregate(pid)
		for _, tid := range tids {
			if err := p.trackLocked(pid, tid, true); err != nil && !procfs.Gone(err) {
				return fmt.Errorf("watch thread %d of process %d: %w", tid, pid, err)
			}
		}
		if _, ok := p.residual[pid]; !ok && aggErr == nil {
			base := p.residualLocked(pid, agg)
			p.residual[pid] = &procResidual{comm: lead.comm, raw: base, base: base}
		}
		p.procs[pid] = true
	}
	return nil
}

// procCgroupDir resolves a cgroup v2 path given absolute or relative to
// the cgroup2 mount (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid
// hosts).
func procCgroupDir(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(Cgroup2Mount(), path)
}

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo; /sys/fs/cgroup when it cannot tell.
func Cgroup2Mount() string {
	if pts, err := procfs.MountPoints("cgroup2"); err == nil && len(pts) > 0 {
		return pts[0]
	}
	return "/sys/fs/cgroup"
}

// procCgroupTids lists the threads of a cgroup v2 directory and of its
// descendant cgroups, nested at any depth.
func procCgroupTids(dir string) ([]int, error) {
	tids, err := procCgroupOwnTids(dir)
	if err != nil {
		return nil, err
	}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == dir {
			return nil // a cgroup removed during the walk is skipped
		}
		if ts, err := procCgroupOwnTids(path); err == nil {
			tids = append(tids, ts...)
		}
		return nil
	})
	return tids, nil
}

// procCgroupOwnTids lists the threads of one cgroup v2 directory:
// cgroup.threads where it exists, else every task of the processes in
// cgroup.procs.
func procCgroupOwnTids(dir string) ([]int, error) {
	parse := func(file string) ([]int, error) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		var ids []int
		for _, f := range strings.Fields(string(b)) {
			id, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %q is not a number", filepath.Join(dir, file), f)
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	if tids, err := parse("cgroup.threads"); err == nil {
		return tids, nil
	}
	pids, err := parse("cgroup.procs")
	if err != nil {
		return nil, err
	}
	var tids []int
	for _, pid := range pids {
		ts, err := procfs.Process(pid).Tasks()
		if err != nil {
			continue // exited since the listing
		}
		tids = append(tids, ts...)
	}
	return tids, nil
}

// AddCgroup counts every thread in a cgroup v2 directory, given as an
// absolute path or relative to the cgroup2 mount; its membership is
// rescanned at every Read.
func (p *procProbe) AddCgroup(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add cgroup: probe is closed")
	}
	dir := procCgroupDir(path)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return fmt.Errorf("watch cgroup %s: %w (give a cgroup v2 directory, absolute or relative to the cgroup2 mount %s, e.g. system.slice/kafka.service)", path, err, Cgroup2Mount())
	}
	tids, err := procCgroupTids(dir)
	if err != nil {
		return fmt.Errorf("watch cgroup %s: %w", path, err)
	}
	for _, tid := range tids {
		pid, err := procTgid(tid)
		if err != nil {
			continue // exited since the listing
		}
		if err := p.trackLocked(pid, tid, true); err != nil && !procfs.Gone(err) {
			return fmt.Errorf("watch thread %d of cgroup %s: %w", tid, path, err)
		}
	}
	for _, c := range p.cgroups {
		if c == dir {
			return nil
		}
	}
	p.cgroups = append(p.cgroups, dir)
	return nil
}

// Read samples every watched thread. New threads of watched processes and
// cgroups are picked up; a vanished thread keeps its last counts and is
// marked Exited.
func (p *procProbe) Read() (Reading, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Reading{}, errors.New("read probe: probe is closed")
	}
	// Process aggregates before any thread (see AddProcesses).
	aggs := map[int]metrics.Counters{}
	for pid := range p.procs {
		if agg, err := procAggregate(pid); err == nil {
			aggs[pid] = agg
		}
	}
	if err := p.discoverLocked(); err != nil {
		return Reading{}, err
	}
	r := Reading{Time: time.Now(), Mode: metrics.ModeProc, Threads: make(map[int]Thread, len(p.threads))}
	if err := p.sampleLocked(r.Threads); err != nil {
		return Reading{}, err
	}
	p.residualsLocked(aggs, r.Threads)
	return r, nil
}

// discoverLocked tracks the threads born since the last Read in watched
// processes and cgroups: they count from zero.
func (p *procProbe) discoverLocked() error {
	for pid := range p.procs {
		tids, err := procfs.Process(pid).Tasks()
		if err != nil {
			if procfs.Gone(err) {
				// Gone for good: a later process reusing the pid is not
				// the one asked for. Its threads are marked exited.
				delete(p.procs, pid)
			}
			continue
		}
		for _, tid := range tids {
			if err := p.trackLocked(pid, tid, false); err != nil && !procfs.Gone(err) {
				return fmt.Errorf("sample new thread %d of process %d: %w", tid, pid, err)
			}
		}
	}
	for _, dir := range p.cgroups {
		tids, err := procCgroupTids(dir)
		if err != nil {
			p.noteLocked(fmt.Sprintf("cgroup %s could not be listed: %v (was it removed?)", dir, err))
			continue
		}
		for _, tid := range tids {
			pid, err := procTgid(tid)
			if err != nil {
				continue
			}
			if err := p.trackLocked(pid, tid, false); err != nil && !procfs.Gone(err) {
				return fmt.Errorf("sample new thread %d of cgroup %s: %w", tid, dir, err)
			}
		}
	}
	return nil
}

// sampleLocked reads every tracked thread (in tid order) into threads; a
// thread that is gone keeps its last counts, marked exited.
func (p *procProbe) sampleLocked(threads map[int]Thread) error {
	tids := make([]int, 0, len(p.threads))
	for tid := range p.threads {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	for _, tid := range tids {
		pt := p.threads[tid]
		if !pt.exited {
			t, err := procReadTask(pt.pid, tid)
			switch {
			case err == nil:
				pt.comm, pt.last = t.comm, t.counters
				pt.exited = t.zombie
				if t.ioErr != nil {
					p.noteLocked(procIONote(tid, t.comm, t.ioErr))
				}
			case procfs.Gone(err):
				pt.exited = true
			default:
				return fmt.Errorf("sample thread %d of process %d: %w", tid, pt.pid, err)
			}
		}
		threads[tid] = Thread{
			TID: tid, PID: pt.pid, Comm: pt.comm, Exited: pt.exited,
			Counters: procSince(pt.last, pt.baseline),
		}
	}
	return nil
}

// residualsLocked updates each whole-watched process's residual from its
// aggregate and adds it to threads as the pseudo-thread -pid.
func (p *procProbe) residualsLocked(aggs map[int]metrics.Counters, threads map[int]Thread) {
	for pid, agg := range aggs {
		res := p.residual[pid]
		if res == nil {
			continue
		}
		cur := p.residualLocked(pid, agg)
		// Never backwards: a thread sampled after the aggregate can make
		// the difference dip for a moment.
		res.raw.Syscalls = max(res.raw.Syscalls, cur.Syscalls)
		res.raw.PageFaults = max(res.raw.PageFaults, cur.PageFaults)
		res.raw.CPUNs = max(res.raw.CPUNs, cur.CPUNs)
		res.raw.Measured = cur.Measured
	}
	for pid, res := range p.residual {
		c := metrics.Counters{
			Measured:   procMeasured,
			Syscalls:   res.raw.Syscalls - min(res.raw.Syscalls, res.base.Syscalls),
			PageFaults: res.raw.PageFaults - min(res.raw.PageFaults, res.base.PageFaults),
			CPUNs:      res.raw.CPUNs - min(res.raw.CPUNs, res.base.CPUNs),
		}
		if !res.raw.Measured.Has(metrics.FSyscalls) {
			c.Measured &^= metrics.FSyscalls
		}
		threads[-pid] = Thread{TID: -pid, PID: pid, Comm: res.comm, Exited: true, Counters: c}
	}
}

// procSince subtracts a thread's pre-watch baseline, keeping the measured
// set of the current sample.
func procSince(cur, base metrics.Counters) metrics.Counters {
	d := cur.Sub(base)
	d.SyscallsByName = nil
	return d
}

// procIONote says why a thread's syscalls are missing.
func procIONote(tid int, comm string, err error) string {
	return fmt.Sprintf("syscalls of thread %d (%s) are missing: /proc io unreadable: %v (run as root or as the process's user)", tid, comm, errors.Unwrap(err))
}

// noteLocked adds a note once.
func (p *procProbe) noteLocked(n string) {
	for _, x := range p.notes {
		if x == n {
			return
		}
	}
	if len(p.notes) < 32 {
		p.notes = append(p.notes, n)
	}
}

// Close forgets every thread. The /proc backend holds no kernel objects.
func (p *procProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.threads, p.procs, p.tids, p.cgroups = nil, nil, nil, nil
	return nil
}
