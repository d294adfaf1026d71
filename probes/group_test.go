package probes

import (
	"testing"
	"time"

	"github.com/copyscope/copyscope/metrics"
)

func grpThread(tid, pid int, comm string, syscalls, cpu uint64, exited bool) Thread {
	return Thread{TID: tid, PID: pid, Comm: comm, Exited: exited, Counters: metrics.Counters{
		Measured: procMeasured, Syscalls: syscalls, CPUNs: cpu,
	}}
}

func grpReading(at time.Time, ts ...Thread) Reading {
	r := Reading{Time: at, Mode: metrics.ModeProc, Threads: map[int]Thread{}}
	for _, t := range ts {
		r.Threads[t.TID] = t
	}
	return r
}

func TestGroupByNames(t *testing.T) {
	now := time.Now()
	r := grpReading(now,
		grpThread(10, 10, "nginx", 5, 50, false),
		grpThread(11, 10, "worker-1", 7, 70, false),
		grpThread(20, 20, "nginx", 1, 10, false),
		grpThread(31, 30, "java-gc", 2, 20, false), // leader not watched
		grpThread(32, 30, "java-io", 3, 30, false),
	)
	for _, tc := range []struct {
		by   Grouping
		want map[metrics.Subject]uint64 // syscalls
	}{
		{ByThread, map[metrics.Subject]uint64{
			{Kind: metrics.KindThread, Name: "nginx:10"}: 5, {Kind: metrics.KindThread, Name: "worker-1:11"}: 7,
			{Kind: metrics.KindThread, Name: "nginx:20"}: 1, {Kind: metrics.KindThread, Name: "java-gc:31"}: 2,
			{Kind: metrics.KindThread, Name: "java-io:32"}: 3,
		}},
		{ByProcess, map[metrics.Subject]uint64{
			{Kind: metrics.KindProcess, Name: "nginx[10]"}: 12, {Kind: metrics.KindProcess, Name: "nginx[20]"}: 1,
			{Kind: metrics.KindProcess, Name: "java-gc[30]"}: 5,
		}},
		{ByComm, map[metrics.Subject]uint64{
			{Kind: metrics.KindComm, Name: "nginx"}: 13, {Kind: metrics.KindComm, Name: "java-gc"}: 5,
		}},
	} {
		s := GroupBy(r, tc.by)
		if len(s.Subjects) != len(tc.want) || s.Mode != metrics.ModeProc || !s.Time.Equal(now) {
			t.Errorf("by %s: %d subjects %v, want %d", tc.by, len(s.Subjects), s.Subjects, len(tc.want))
		}
		for sub, n := range tc.want {
			c, ok := s.Subjects[sub]
			if !ok || c.Syscalls != n || c.Measured != procMeasured {
				t.Errorf("by %s: %v = %+v (present %v), want %d syscalls measured %b", tc.by, sub, c, ok, n, procMeasured)
			}
		}
	}
	if _, err := ParseGrouping("cgroup"); err == nil {
		t.Error("ParseGrouping(cgroup) succeeded")
	}
}

// TestGrouperNeverGoesBackwards: a thread that exits keeps counting in its
// group, and one the backend forgets is retired into it, so no interval
// delta is negative (metrics.Sub would clamp it to a silent zero).
func TestGrouperNeverGoesBackwards(t *testing.T) {
	t0 := time.Now()
	g := NewGrouper(ByProcess)
	sub := metrics.Subject{Kind: metrics.KindProcess, Name: "srv[1]"}
	steps := []Reading{
		grpReading(t0, grpThread(1, 1, "srv", 10, 100, false), grpThread(2, 1, "w", 20, 200, false)),
		grpReading(t0.Add(time.Second), grpThread(1, 1, "srv", 11, 110, false), grpThread(2, 1, "w", 25, 250, true)),
		// thread 2 forgotten by the backend; a new thread 3 appears
		grpReading(t0.Add(2*time.Second), grpThread(1, 1, "srv", 12, 120, false), grpThread(3, 1, "w", 4, 40, false)),
		// the leader is gone too; its name is remembered
		grpReading(t0.Add(3*time.Second), grpThread(3, 1, "w", 6, 60, false)),
	}
	want := []uint64{30, 36, 41, 43}
	var prev metrics.Snapshot
	for i, r := range steps {
		s := g.Snapshot(r)
		c, ok := s.Subjects[sub]
		if !ok || c.Syscalls != want[i] {
			t.Fatalf("step %d: %v = %+v (present %v), want %d syscalls; subjects %v", i, sub, c, ok, want[i], s.Subjects)
		}
		if i > 0 {
			for _, rec := range metrics.Records(prev, s) {
				if *rec.Syscalls != want[i]-want[i-1] || rec.IntervalS != 1 {
					t.Errorf("step %d: record %s syscalls %d over %vs, want %d over 1s", i, rec.Subject, *rec.Syscalls, rec.IntervalS, want[i]-want[i-1])
				}
			}
		}
		prev = s
	}
}

func TestGroupFuncMeasuredIntersection(t *testing.T) {
	a := grpThread(1, 1, "a", 1, 1, false)
	b := grpThread(2, 1, "b", 1, 1, false)
	b.Counters.Measured &^= metrics.FSyscalls // e.g. /proc/<tid>/io unreadable
	c := grpThread(3, 3, "c", 1, 1, false)
	path := metrics.Subject{Kind: metrics.KindPath, Name: "sendfile"}
	s := GroupFunc(grpReading(time.Now(), a, b, c), func(t Thread) (metrics.Subject, bool) {
		return path, t.PID == 1
	})
	got := s.Subjects[path]
	if len(s.Subjects) != 1 || got.Measured.Has(metrics.FSyscalls) || !got.Measured.Has(metrics.FCPU) || got.CPUNs != 2 {
		t.Errorf("GroupFunc = %+v, want one path subject without syscalls, cpu 2", s.Subjects)
	}
}

// TestGrouperReleased: a thread released into its process's pseudo-thread
// is counted once, through the pseudo-thread, not also retired under its
// own subject; a thread that merely leaves is retired.
func TestGrouperReleased(t *testing.T) {
	now := time.Now()
	proc := metrics.Subject{Kind: metrics.KindProcess, Name: "srv[10]"}
	g := NewGrouper(ByProcess)
	g.Snapshot(grpReading(now, grpThread(10, 10, "srv", 5, 0, false), grpThread(11, 10, "w", 7, 0, true)))
	// 11 released into -10; 12 (exited) left without being released.
	r := grpReading(now.Add(time.Second), grpThread(10, 10, "srv", 6, 0, false), grpThread(-10, 10, "w", 7, 0, true),
		grpThread(12, 10, "x", 3, 0, true))
	r.Released = []int{11}
	g.Snapshot(r)
	s := g.Snapshot(grpReading(now.Add(2*time.Second), grpThread(10, 10, "srv", 8, 0, false), grpThread(-10, 10, "w", 7, 0, true)))
	if got := s.Subjects[proc].Syscalls; got != 8+7+3 {
		t.Errorf("process syscalls %d, want %d (live 8, released 7, retired 3)", got, 8+7+3)
	}
}

// TestGrouperRetire: a retired thread's counts stay with its old subject
// and its id, reused by a new thread of another subject, starts afresh.
func TestGrouperRetire(t *testing.T) {
	path := map[int]string{7: "read"}
	g := NewGrouperFunc(func(th Thread) (metrics.Subject, bool) {
		p, ok := path[th.TID]
		return metrics.Subject{Kind: metrics.KindPath, Name: p}, ok
	})
	read := metrics.Subject{Kind: metrics.KindPath, Name: "read"}
	mmap := metrics.Subject{Kind: metrics.KindPath, Name: "mmap"}
	now := time.Now()
	g.Snapshot(grpReading(now, grpThread(7, 1, "data", 10, 0, false)))
	g.Retire(7, 99) // 99 was never seen: ignored
	path[7] = "mmap"
	s := g.Snapshot(grpReading(now.Add(time.Second), grpThread(7, 1, "data", 3, 0, false)))
	if got := s.Subjects[read].Syscalls; got != 10 {
		t.Errorf("read after retiring its thread: %d syscalls, want the 10 it had", got)
	}
	if got := s.Subjects[mmap].Syscalls; got != 3 {
		t.Errorf("mmap, the reused id's new subject: %d syscalls, want 3", got)
	}
}

// TestGrouperExecRenames: a process that execs is named by its new
// program from the next record on; what it counted before stays with the
// old name, and no interval counts anything twice.
func TestGrouperExecRenames(t *testing.T) {
	t0 := time.Now()
	g := NewGrouper(ByProcess)
	sh := metrics.Subject{Kind: metrics.KindProcess, Name: "sh[5]"}
	dd := metrics.Subject{Kind: metrics.KindProcess, Name: "dd[5]"}
	steps := []struct {
		r    Reading
		want map[metrics.Subject]uint64 // syscalls in the interval
	}{
		{grpReading(t0, grpThread(5, 5, "sh", 10, 0, false)), nil},
		{grpReading(t0.Add(time.Second), grpThread(5, 5, "sh", 14, 0, false)), map[metrics.Subject]uint64{sh: 4}},
		// exec: the 6 syscalls up to this reading go to sh, dd starts here.
		{grpReading(t0.Add(2*time.Second), grpThread(5, 5, "dd", 20, 0, false)), map[metrics.Subject]uint64{sh: 6, dd: 0}},
		{grpReading(t0.Add(3*time.Second), grpThread(5, 5, "dd", 45, 0, false)), map[metrics.Subject]uint64{sh: 0, dd: 25}},
	}
	prev := g.Snapshot(steps[0].r)
	first := prev
	for i, st := range steps[1:] {
		cur := g.Snapshot(st.r)
		got := map[metrics.Subject]uint64{}
		for _, rec := range metrics.Records(prev, cur) {
			got[metrics.Subject{Kind: rec.Kind, Name: rec.Subject}] = *rec.Syscalls
		}
		for sub, want := range st.want {
			if got[sub] != want {
				t.Errorf("step %d: %s counted %d syscalls, want %d (all: %v)", i+1, sub.Name, got[sub], want, got)
			}
		}
		if len(got) != len(st.want) {
			t.Errorf("step %d: subjects %v, want %v", i+1, got, st.want)
		}
		prev = cur
	}
	var total uint64
	for _, rec := range metrics.Totals(first, prev) {
		total += *rec.Syscalls
	}
	if total != 35 {
		t.Errorf("the run's totals add up to %d syscalls, want 35 (45 - 10 at the start)", total)
	}
}

// TestGrouperByPort: a thread first seen before it touched a socket
// takes all its counts to its port's subject once it has one, and keeps
// that subject when its last socket is another port's.
func TestGrouperByPort(t *testing.T) {
	t0 := time.Now()
	g := NewGrouper(ByPort)
	th := func(port int, syscalls uint64) Thread {
		x := grpThread(7, 5, "conn", syscalls, 0, false)
		x.Port = port
		return x
	}
	g.Snapshot(grpReading(t0, th(0, 2)))
	s := g.Snapshot(grpReading(t0.Add(time.Second), th(9092, 50)))
	p9092 := metrics.Subject{Kind: metrics.KindPort, Name: ":9092"}
	if got := s.Subjects[p9092].Syscalls; got != 50 {
		t.Errorf(":9092 has %d syscalls, want all 50 of the thread's", got)
	}
	s = g.Snapshot(grpReading(t0.Add(2*time.Second), th(40000, 60)))
	if got := s.Subjects[p9092].Syscalls; got != 60 {
		t.Errorf("after a socket of another port, :9092 has %d syscalls, want 60", got)
	}
}
