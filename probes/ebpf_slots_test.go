//go:build linux && amd64

package probes

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// watchedWorker starts a thread that watches itself, makes n getppid
// calls, reports its tid and, when release is closed, exits (a goroutine
// that returns with its OS thread locked takes the thread with it).
func watchedWorker(t *testing.T, p Probe, n int, release <-chan struct{}) int {
	t.Helper()
	tidc := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid := unix.Gettid()
		if err := p.AddThreads(tid); err != nil {
			errc <- err
			return
		}
		for i := 0; i < n; i++ {
			unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		tidc <- tid
		<-release
	}()
	select {
	case tid := <-tidc:
		return tid
	case err := <-errc:
		t.Fatalf("AddThreads: %v", err)
	}
	return 0
}

// waitThreadGone waits until a thread of this process has exited.
func waitThreadGone(t *testing.T, tid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid)); os.IsNotExist(err) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("thread %d did not exit", tid)
}

// TestEBPFSlotsRecycled runs three times more threads than there are
// slots, one after another: the slots of exited threads are recycled at
// each Read and every thread's final count is kept exactly.
func TestEBPFSlotsRecycled(t *testing.T) {
	const slots, threads, calls = 4, 12, 100
	p := openEBPFOrSkip(t, EBPFOptions{MaxThreads: slots})
	var tids []int
	for i := 0; i < threads; i++ {
		release := make(chan struct{})
		tid := watchedWorker(t, p, calls, release)
		close(release)
		if tid == os.Getpid() {
			// Go never ends the main thread (it parks it instead): it
			// keeps its slot and is not one of the exiting threads.
			continue
		}
		waitThreadGone(t, tid)
		tids = append(tids, tid)
		if _, err := p.Read(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < threads-1 {
		t.Fatalf("only %d of %d threads exited", len(tids), threads)
	}
	for _, tid := range tids {
		th := r.Threads[tid]
		if got := th.Counters.SyscallsByName["getppid"]; got != calls || !th.Exited {
			t.Errorf("thread %d: getppid %d exited %v, want %d and exited", tid, got, th.Exited, calls)
		}
	}
	for _, n := range p.Notes() {
		if strings.Contains(n, "threads at once") {
			t.Errorf("slots ran out although threads ran one at a time: %s", n)
		}
	}
}

// TestEBPFSlotsExhausted keeps one more thread alive than there are
// slots: the extra thread is not counted, the others exactly, and Notes
// says why.
func TestEBPFSlotsExhausted(t *testing.T) {
	const slots, calls = 2, 50
	p := openEBPFOrSkip(t, EBPFOptions{MaxThreads: slots})
	release := make(chan struct{})
	defer close(release)
	var tids []int
	for i := 0; i < slots+1; i++ {
		tids = append(tids, watchedWorker(t, p, calls, release))
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, tid := range tids {
		switch got := r.Threads[tid].Counters.SyscallsByName["getppid"]; got {
		case calls:
			counted++
		case 0:
		default:
			t.Errorf("thread %d: getppid %d, want %d or (no slot) 0", tid, got, calls)
		}
	}
	if counted != slots {
		t.Errorf("%d threads counted, want %d (one per slot)", counted, slots)
	}
	found := false
	for _, n := range p.Notes() {
		found = found || strings.Contains(n, "more than 2 threads at once")
	}
	if !found {
		t.Errorf("Notes %q do not say the slots ran out", p.Notes())
	}
}

// TestEBPFThreadIDAbovePidMax loads tid_slots with room for no thread id,
// as if pid_max had been raised after loading: a watched thread's
// syscalls are not counted, and Notes says why and what to do.
func TestEBPFThreadIDAbovePidMax(t *testing.T) {
	openEBPFOrSkip(t).Close() // skips without privileges
	p, err := openEBPF(EBPFOptions{}, ebpfPrograms(), func(obj string, spec *ebpf.CollectionSpec) {
		if m := spec.Maps["tid_slots"]; m != nil {
			m.MaxEntries = 1
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	release := make(chan struct{})
	defer close(release)
	tid := watchedWorker(t, p, 10, release)
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Threads[tid].Counters.Syscalls; got != 0 {
		t.Errorf("thread %d: %d syscalls counted without a tid_slots entry, want 0", tid, got)
	}
	found := false
	for _, n := range p.Notes() {
		found = found || strings.Contains(n, "pid_max")
	}
	if !found {
		t.Errorf("Notes %q do not mention pid_max", p.Notes())
	}
}
