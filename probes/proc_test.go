package probes

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
)

func openProcT(t *testing.T) Probe {
	t.Helper()
	p, err := OpenProc()
	if err != nil {
		t.Fatalf("OpenProc: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// procWorker is a goroutine locked to its own OS thread that runs the
// functions sent to it, so a test knows exactly which thread did what.
type procWorker struct {
	tid  int
	work chan func()
	done chan struct{}
}

func startProcWorker(t *testing.T) *procWorker {
	t.Helper()
	w := &procWorker{work: make(chan func()), done: make(chan struct{})}
	ready := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ready <- unix.Gettid()
		for f := range w.work {
			f()
			w.done <- struct{}{}
		}
	}()
	w.tid = <-ready
	t.Cleanup(func() { close(w.work) })
	return w
}

func (w *procWorker) run(f func()) {
	w.work <- f
	<-w.done
}

func readT(t *testing.T, p Probe) Reading {
	t.Helper()
	r, err := p.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return r
}

// TestProcKnownWorkload checks the proc backend against a thread whose
// work is known exactly.
func TestProcKnownWorkload(t *testing.T) {
	p := openProcT(t)
	w := startProcWorker(t)
	if err := p.AddThreads(w.tid); err != nil {
		t.Fatalf("AddThreads(%d): %v", w.tid, err)
	}
	zero, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer zero.Close()
	null, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	const n, chunk, sleeps, pages = 1000, 4096, 20, 1024

	r0 := readT(t, p)
	io0, err := procfs.Thread(os.Getpid(), w.tid).IO()
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	var cpuIn unix.Timespec
	var faultsIn int64
	w.run(func() {
		var c0, c1 unix.Timespec
		var ru0, ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c0)
		buf := make([]byte, chunk)
		for range n {
			if _, err := unix.Read(int(zero.Fd()), buf); err != nil {
				errs = append(errs, err)
				return
			}
			if _, err := unix.Write(int(null.Fd()), buf); err != nil {
				errs = append(errs, err)
				return
			}
		}
		for range sleeps {
			unix.Nanosleep(&unix.Timespec{Nsec: int64(time.Millisecond)}, nil)
		}
		mem, err := unix.Mmap(-1, 0, pages*os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			errs = append(errs, err)
			return
		}
		unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
		for i := 0; i < len(mem); i += os.Getpagesize() {
			mem[i] = 1
		}
		unix.Munmap(mem)
		for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
		}
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c1)
		unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
		faultsIn = ru1.Minflt + ru1.Majflt - ru0.Minflt - ru0.Majflt
		cpuIn = unix.NsecToTimespec(c1.Nano() - c0.Nano())
	})
	if len(errs) > 0 {
		t.Fatalf("workload: %v", errs)
	}
	r1 := readT(t, p)
	io1, err := procfs.Thread(os.Getpid(), w.tid).IO()
	if err != nil {
		t.Fatal(err)
	}

	if got := io1.SyscR - io0.SyscR; got != n {
		t.Errorf("syscr delta = %d, want %d reads", got, n)
	}
	if got := io1.SyscW - io0.SyscW; got != n {
		t.Errorf("syscw delta = %d, want %d writes", got, n)
	}
	if got := io1.RChar - io0.RChar; got != n*chunk {
		t.Errorf("rchar delta = %d, want %d", got, n*chunk)
	}
	if got := io1.WChar - io0.WChar; got != n*chunk {
		t.Errorf("wchar delta = %d, want %d", got, n*chunk)
	}
	a, ok := r0.Threads[w.tid]
	b, ok2 := r1.Threads[w.tid]
	if !ok || !ok2 {
		t.Fatalf("thread %d missing from the readings (%v, %v)", w.tid, ok, ok2)
	}
	if b.PID != os.Getpid() || b.Exited || r1.Mode != metrics.ModeProc {
		t.Errorf("thread = %+v mode %s, want pid %d, live, proc mode", b, r1.Mode, os.Getpid())
	}
	d := b.Counters.Sub(a.Counters)
	if d.Measured != procMeasured {
		t.Errorf("measured = %b, want %b", d.Measured, procMeasured)
	}
	if d.Syscalls != 2*n {
		t.Errorf("syscalls delta = %d, want %d (syscr+syscw of %d reads and %d writes)", d.Syscalls, 2*n, n, n)
	}
	if d.CtxVoluntary < sleeps || d.CtxVoluntary > sleeps+10 {
		t.Errorf("voluntary ctx switches = %d, want %d sleeps (+ up to 10 channel waits)", d.CtxVoluntary, sleeps)
	}
	// The runtime (and the race detector's shadow memory) fault too: the
	// thread's own rusage inside the work is the reference.
	if d.PageFaults < pages || d.PageFaults < uint64(faultsIn) || d.PageFaults > uint64(faultsIn)+64 {
		t.Errorf("page faults = %d, want at least the %d touched pages and within 64 of the thread's own rusage count %d", d.PageFaults, pages, faultsIn)
	}
	in := uint64(cpuIn.Nano())
	if d.CPUNs < in || d.CPUNs > in+in/20+5e6 {
		t.Errorf("cpu_ns = %d, want at least the thread's own CPU clock %d and within 5%%+5ms of it", d.CPUNs, in)
	}
	r2 := readT(t, p)
	if c := r2.Threads[w.tid].Counters.CPUNs; c < b.Counters.CPUNs {
		t.Errorf("cpu_ns went backwards: %d then %d", b.Counters.CPUNs, c)
	}
	// Counts start when the thread is first watched.
	if a.Counters.Syscalls > 10 {
		t.Errorf("first reading has %d syscalls: the pre-watch baseline was not subtracted", a.Counters.Syscalls)
	}
}

// procChild runs a python3 script whose stdin lines command it, for
// threads we did not create in this process.
type procChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

const procChildScript = `
import os, sys, threading, time
ev = threading.Event()
th = None
def work():
    fd = os.open("/dev/null", os.O_WRONLY)
    for _ in range(100):
        os.write(fd, b"x" * 512)
    os.close(fd)
    print("ready", threading.get_native_id(), flush=True)
    ev.wait()
for line in sys.stdin:
    c = line.strip()
    if c == "t":
        th = threading.Thread(target=work, name="worker")
        th.start()
    elif c == "x":
        ev.set(); th.join()
        print("done", flush=True)
    elif c == "ping":
        print("pong", flush=True)
    elif c == "burst":
        def short():
            fd = os.open("/dev/null", os.O_WRONLY)
            for _ in range(100):
                os.write(fd, b"y")
            os.close(fd)
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.01:
                pass
        ts = [threading.Thread(target=short) for _ in range(20)]
        for t in ts: t.start()
        for t in ts: t.join()
        print("burst", flush=True)
`

func startProcChild(t *testing.T) *procChild {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("this test needs python3 to run a multi-threaded child: install python3")
	}
	c := &procChild{cmd: exec.Command(py, "-c", procChildScript)}
	c.in, err = c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewReader(out)
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start python3: %v", err)
	}
	t.Cleanup(func() {
		c.in.Close()
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
	// Interpreter start-up does hundreds of reads (some in threads that
	// are gone by now): let it finish before a test starts counting.
	c.say(t, "ping", "pong")
	return c
}

func (c *procChild) say(t *testing.T, cmd, want string) string {
	t.Helper()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		t.Fatalf("tell child %q: %v", cmd, err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, want) {
		t.Fatalf("child answered %q, %v; want %q", line, err, want)
	}
	return strings.TrimSpace(line)
}

// TestProcProcessThreadsAndExit watches a process, sees a thread it starts
// later, keeps that thread's counts after it exits, and keeps the process
// after it dies.
func TestProcProcessThreadsAndExit(t *testing.T) {
	p := openProcT(t)
	c := startProcChild(t)
	pid := c.cmd.Process.Pid
	if err := p.AddProcesses(pid); err != nil {
		t.Fatalf("AddProcesses(%d): %v", pid, err)
	}
	g := NewGrouper(ByProcess)
	r0 := readT(t, p)
	s0 := g.Snapshot(r0)

	_, tidStr, _ := strings.Cut(c.say(t, "t", "ready"), " ")
	r1 := readT(t, p)
	s1 := g.Snapshot(r1)
	wtid, _ := strconv.Atoi(tidStr)
	worker, ok := r1.Threads[wtid]
	if !ok || worker.PID != pid || worker.Exited {
		t.Fatalf("new thread %d not picked up: %+v", wtid, r1.Threads)
	}
	if worker.Counters.Syscalls < 100 {
		t.Errorf("new thread syscalls = %d, want at least its 100 writes (a new thread counts from its start)", worker.Counters.Syscalls)
	}

	c.say(t, "x", "done")
	// join returns before the OS thread has finished exiting: wait for it.
	var r2 Reading
	for range 100 {
		if r2 = readT(t, p); r2.Threads[worker.TID].Exited {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s2 := g.Snapshot(r2)
	gone := r2.Threads[worker.TID]
	if !gone.Exited || gone.Counters.Syscalls != worker.Counters.Syscalls {
		t.Errorf("exited thread = %+v, want Exited with its last %d syscalls", gone, worker.Counters.Syscalls)
	}
	sub := metrics.Subject{Kind: metrics.KindProcess, Name: "python3[" + strconv.Itoa(pid) + "]"}
	for i, pair := range [][2]metrics.Snapshot{{s0, s1}, {s1, s2}} {
		prev, cur := pair[0].Subjects[sub], pair[1].Subjects[sub]
		if cur.Syscalls < prev.Syscalls || cur.CPUNs < prev.CPUNs || cur.CtxVoluntary < prev.CtxVoluntary {
			t.Errorf("interval %d: process totals went backwards: %+v -> %+v", i, prev, cur)
		}
	}
	if d := s2.Subjects[sub].Syscalls - s0.Subjects[sub].Syscalls; d < 100 {
		t.Errorf("process syscalls over the run = %d, want at least the worker's 100 writes", d)
	}

	c.in.Close()
	c.cmd.Wait()
	r3 := readT(t, p)
	for tid, th := range r3.Threads {
		if !th.Exited {
			t.Errorf("thread %d of the dead process is not marked exited", tid)
		}
	}
	if s3 := g.Snapshot(r3); s3.Subjects[sub].Syscalls < s2.Subjects[sub].Syscalls {
		t.Errorf("dead process lost counts: %d -> %d", s2.Subjects[sub].Syscalls, s3.Subjects[sub].Syscalls)
	}
}

// TestProcNoSuchProcess checks the errors for pids that are not processes.
func TestProcNoSuchProcess(t *testing.T) {
	p := openProcT(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	dead := cmd.Process.Pid
	err := p.AddProcesses(dead)
	if err == nil || !strings.Contains(err.Error(), "no such process: "+strconv.Itoa(dead)) {
		t.Errorf("AddProcesses(dead pid %d) = %v, want \"no such process: %d\"", dead, err, dead)
	}
	// Any thread of this process but its leader (a locked worker can land
	// on the main thread, whose tid is the pid).
	tids, err := procfs.Process(os.Getpid()).Tasks()
	if err != nil {
		t.Fatal(err)
	}
	thread := 0
	for _, tid := range tids {
		if tid != os.Getpid() {
			thread = tid
		}
	}
	err = p.AddProcesses(thread)
	if err == nil || !strings.Contains(err.Error(), "is a thread of process") {
		t.Errorf("AddProcesses(thread %d) = %v, want an error naming its process", thread, err)
	}
	if err := p.AddCgroup("no/such/cgroup-copyscope-test"); err == nil {
		t.Error("AddCgroup of a missing directory succeeded")
	}
}

// TestProcCgroup moves a child into a new cgroup v2 directory and watches
// the cgroup by its path relative to the cgroup2 mount.
func TestProcCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a test cgroup needs root: run the probes tests as root")
	}
	mnt := Cgroup2Mount()
	if _, err := os.Stat(filepath.Join(mnt, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v2 hierarchy (%v): mount -t cgroup2 none /sys/fs/cgroup", err)
	}
	name := "copyscope-proc-test-" + strconv.Itoa(os.Getpid())
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	c := startProcChild(t)
	pid := c.cmd.Process.Pid
	t.Cleanup(func() {
		// Dead members leave on their own; rmdir once the child is reaped.
		c.cmd.Process.Kill()
		c.cmd.Wait()
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move child %d into %s: %v", pid, dir, err)
	}
	p := openProcT(t)
	if err := p.AddCgroup(name); err != nil {
		t.Fatalf("AddCgroup(%s) relative to %s: %v", name, mnt, err)
	}
	_, tidStr, _ := strings.Cut(c.say(t, "t", "ready"), " ")
	wtid, _ := strconv.Atoi(tidStr)
	r := readT(t, p)
	if len(r.Threads) != 2 {
		t.Errorf("cgroup reading has %d threads, want the child's 2: %+v", len(r.Threads), r.Threads)
	}
	if th, ok := r.Threads[wtid]; !ok || th.PID != pid || th.Counters.Syscalls < 100 {
		t.Errorf("new thread %d of the child in the cgroup: %+v, want pid %d and at least 100 syscalls", wtid, th, pid)
	}
}

// TestProcSampler runs the Sampler on the proc backend and checks that
// records carry the measured interval and the proc labels.
func TestProcSampler(t *testing.T) {
	p := openProcT(t)
	w := startProcWorker(t)
	if err := p.AddThreads(w.tid); err != nil {
		t.Fatal(err)
	}
	s := NewSampler(p, NewGrouper(ByThread).Snapshot, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []metrics.Record
	ticks := 0
	err := s.Run(ctx, func(prev, cur metrics.Snapshot, recs []metrics.Record) error {
		ticks++
		if want := cur.Time.Sub(prev.Time).Seconds(); len(recs) != 1 || recs[0].IntervalS != want {
			t.Errorf("tick %d: records %+v, want one with interval %v", ticks, recs, want)
		}
		got = append(got, recs...)
		if ticks == 3 {
			return ErrStopSampling
		}
		return nil
	})
	if err != nil || ticks != 3 {
		t.Fatalf("Run = %v after %d ticks, want nil after 3", err, ticks)
	}
	for _, r := range got {
		if r.Mode != metrics.ModeProc || !r.Estimate || r.Kind != metrics.KindThread || r.Syscalls == nil || r.CPUNs == nil || r.DeliveredBytes != nil || r.CopiedToUserBytes != nil {
			t.Errorf("record %+v: want proc estimate with syscalls and cpu_ns, without delivered or copies", r)
		}
	}
}

// TestProcUnseenThreads: threads born and gone between two samples are
// never seen one by one, yet their syscalls count in their process through
// the pseudo-thread that the process-wide /proc files feed.
func TestProcUnseenThreads(t *testing.T) {
	p := openProcT(t)
	c := startProcChild(t)
	pid := c.cmd.Process.Pid
	if err := p.AddProcesses(pid); err != nil {
		t.Fatal(err)
	}
	r0 := readT(t, p)
	c.say(t, "burst", "burst")
	// join returns before the OS threads are fully gone: let them go.
	time.Sleep(200 * time.Millisecond)
	r1 := readT(t, p)
	pseudo, ok := r1.Threads[-pid]
	if !ok || !pseudo.Exited || pseudo.PID != pid {
		t.Fatalf("no exited pseudo-thread -%d in %+v", pid, r1.Threads)
	}
	const want = 20 * 100 // writes; plus an open and a close per thread
	if d := pseudo.Counters.Syscalls - r0.Threads[-pid].Counters.Syscalls; d < want || d > want+20*4 {
		t.Errorf("unseen threads' syscalls = %d, want %d writes (+ up to %d opens/closes)", d, want, 20*4)
	}
	// Each thread spun 10 ms of its own CPU: 200 ms, cut to clock ticks.
	if d := pseudo.Counters.CPUNs - r0.Threads[-pid].Counters.CPUNs; d < 180e6 || d > 400e6 {
		t.Errorf("unseen threads' cpu_ns = %d, want about 200 ms (20 threads x 10 ms)", d)
	}
	s0, s1 := GroupBy(r0, ByProcess), GroupBy(r1, ByProcess)
	sub := metrics.Subject{Kind: metrics.KindProcess, Name: "python3[" + strconv.Itoa(pid) + "]"}
	if len(s1.Subjects) != 1 {
		t.Errorf("subjects %v, want only %v", s1.Subjects, sub)
	}
	if d := s1.Subjects[sub].Syscalls - s0.Subjects[sub].Syscalls; d < want {
		t.Errorf("process syscalls over the burst = %d, want at least %d", d, want)
	}
	th := GroupBy(r1, ByThread)
	if _, ok := th.Subjects[metrics.Subject{Kind: metrics.KindThread, Name: "python3[" + strconv.Itoa(pid) + "]:exited-threads"}]; !ok {
		t.Errorf("by thread, no exited-threads subject: %v", th.Subjects)
	}
}
