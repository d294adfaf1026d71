//go:build linux && amd64

package probes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/metrics"
)

// openEBPFOrSkip opens the eBPF probe, or skips the test saying exactly what
// is missing (root, BTF, permission). It never skips silently.
func openEBPFOrSkip(t *testing.T, opts ...EBPFOptions) Probe {
	t.Helper()
	var o EBPFOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if os.Geteuid() != 0 {
		t.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the probes tests as root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skipf("eBPF probes need kernel BTF: %v (build the kernel with CONFIG_DEBUG_INFO_BTF=y)", err)
	}
	p, err := OpenEBPF(o)
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		t.Skipf("loading BPF programs is not permitted here: %v", err)
	}
	if err != nil {
		t.Fatalf("OpenEBPF: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, n := range p.Notes() {
		t.Logf("note: %s", n)
	}
	return p
}

// procSample is what the kernel itself says about one thread.
type procSample struct {
	rchar, wchar        uint64
	voluntary, invol    uint64
	minflt, majflt      uint64
	runtimeNs           uint64
	probe               metrics.Counters
	probeTID, probePID  int
	probeComm           string
	probeThreadReported bool
}

func taskPath(tid int, file string) string {
	return fmt.Sprintf("/proc/%d/task/%d/%s", os.Getpid(), tid, file)
}

func sampleThread(t *testing.T, p Probe, tid int) procSample {
	t.Helper()
	var s procSample
	r, err := p.Read()
	if err != nil {
		t.Fatalf("probe Read: %v", err)
	}
	if th, ok := r.Threads[tid]; ok {
		s.probe = th.Counters
		s.probeTID, s.probePID, s.probeComm, s.probeThreadReported = th.TID, th.PID, th.Comm, true
	}
	kv := func(file string) map[string]uint64 {
		b, err := os.ReadFile(taskPath(tid, file))
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		m := map[string]uint64{}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
				m[k] = n
			}
		}
		return m
	}
	io := kv("io")
	s.rchar, s.wchar = io["rchar"], io["wchar"]
	st := kv("status")
	s.voluntary, s.invol = st["voluntary_ctxt_switches"], st["nonvoluntary_ctxt_switches"]
	b, err := os.ReadFile(taskPath(tid, "stat"))
	if err != nil {
		t.Fatalf("read stat: %v", err)
	}
	// Fields after the ")" of comm: state is field 3; minflt 10, majflt 12.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	s.minflt, _ = strconv.ParseUint(f[7], 10, 64)
	s.majflt, _ = strconv.ParseUint(f[9], 10, 64)
	b, err = os.ReadFile(taskPath(tid, "schedstat"))
	if err != nil {
		t.Fatalf("read schedstat: %v", err)
	}
	s.runtimeNs, _ = strconv.ParseUint(strings.Fields(string(b))[0], 10, 64)
	return s
}

// waitInRead waits until thread tid is blocked in read(fd) and off CPU, so
// that none of its counters can move while both sides are sampled. State S
// alone is not enough: a thread is S from just before it calls into the
// scheduler until it has switched away; wchan is non-zero only once it is
// off CPU.
func waitInRead(t *testing.T, tid, fd int) {
	t.Helper()
	want := fmt.Sprintf("0 0x%x ", fd)
	for i := 0; i < 5000; i++ {
		b, err := os.ReadFile(taskPath(tid, "syscall"))
		if err == nil && strings.HasPrefix(string(b), want) {
			wchan, _ := os.ReadFile(taskPath(tid, "wchan"))
			if w := strings.TrimSpace(string(wchan)); w != "" && w != "0" {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("thread %d never blocked in read(%d)", tid, fd)
}

// runLocked runs work on a fresh OS thread that only the work uses, and
// samples the probe and /proc while the thread is parked before and after
// the work (blocked in read on a pipe, so nothing moves while sampling).
// The thread exits afterwards (it is never unlocked).
//
// Besides the work, the window holds the parking itself: the exit of the
// 1-byte read from the start pipe, one 1-byte write to the done pipe and
// the entry of the read on the exit pipe (harness* below).
func runLocked(t *testing.T, p Probe, work func() error) (before, after procSample, tid int) {
	t.Helper()
	start, done, exit := pipe(t), pipe(t), pipe(t)
	tidc := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tidc <- unix.Gettid()
		var b [1]byte
		if _, err := unix.Read(start[0], b[:]); err != nil {
			errc <- fmt.Errorf("wait for start: %w", err)
			return
		}
		err := work()
		if _, werr := unix.Write(done[1], b[:]); werr != nil && err == nil {
			err = werr
		}
		if _, rerr := unix.Read(exit[0], b[:]); rerr != nil && err == nil {
			err = rerr
		}
		errc <- err
	}()
	tid = <-tidc
	if err := p.AddThreads(tid); err != nil {
		t.Fatalf("AddThreads(%d): %v", tid, err)
	}
	one := []byte{1}
	waitInRead(t, tid, start[0])
	before = sampleThread(t, p, tid)
	if _, err := unix.Write(start[1], one); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := unix.Read(done[0], b[:]); err != nil {
		t.Fatal(err)
	}
	waitInRead(t, tid, exit[0])
	after = sampleThread(t, p, tid)
	if _, err := unix.Write(exit[1], one); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("workload: %v", err)
	}
	return before, after, tid
}

// What runLocked's parking adds to every window.
const (
	harnessReads      = 1 // read entered on the exit pipe
	harnessWrites     = 1 // write of one byte to the done pipe
	harnessPipeIn     = 1 // byte read from the start pipe (copied to user, pipe)
	harnessPipeOutput = 1 // byte written to the done pipe (copied from user, pipe)
)

func pipe(t *testing.T) [2]int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p
}

// drain reads fd until EOF or error on its own thread; the returned
// function waits for it.
func drain(fd int) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for i := 0; i < 1<<24; i++ {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return
			}
		}
	}()
	return func() { <-done }
}

func tempFile(t *testing.T, size int) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func within(a, b uint64, frac float64, abs uint64) bool {
	d := a - b
	if b > a {
		d = b - a
	}
	return d <= abs || float64(d) <= frac*float64(max(a, b))
}

// TestEBPFGroundTruth runs a workload whose syscalls are known exactly on a
// thread of its own and compares the probe with the workload's own counts
// and with the kernel's per-thread counters in /proc.
// Both ways of counting syscalls (at return, the default, and at entry)
// must give the same exact counts.
func TestEBPFGroundTruth(t *testing.T) {
	t.Run("count-at-return", func(t *testing.T) { groundTruth(t, EBPFOptions{}) })
	t.Run("count-at-entry", func(t *testing.T) { groundTruth(t, EBPFOptions{CountAtEntry: true}) })
}

func groundTruth(t *testing.T, opts EBPFOptions) {
	p := openEBPFOrSkip(t, opts)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	const (
		n        = 200  // each of pread64, pwrite64, write, sendto
		k        = 4096 // bytes per call
		getpids  = 1000
		sleeps   = 100
		anonPg   = 512
		filePg   = 256
		spinIter = 20_000_000
	)
	src := tempFile(t, filePg*4096)
	dst := tempFile(t, 0)
	pp := pipe(t)
	waitPipe := drain(pp[0])
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitSock := drain(sp[1])
	pageSize := os.Getpagesize()

	var sink uint64
	nanosleeps := uint64(0)
	before, after, tid := runLocked(t, p, func() error {
		buf := make([]byte, k)
		for i := 0; i < n; i++ {
			if got, err := unix.Pread(int(src.Fd()), buf, int64(i*k)%int64(filePg*4096)); err != nil || got != k {
				return fmt.Errorf("pread: %d, %v", got, err)
			}
			if got, err := unix.Pwrite(int(dst.Fd()), buf, int64(i*k)); err != nil || got != k {
				return fmt.Errorf("pwrite: %d, %v", got, err)
			}
			if got, err := unix.Write(pp[1], buf); err != nil || got != k {
				return fmt.Errorf("write pipe: %d, %v", got, err)
			}
			if err := unix.Sendto(sp[0], buf, 0, nil); err != nil {
				return fmt.Errorf("sendto: %v", err)
			}
		}
		for i := 0; i < getpids; i++ {
			unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
		}
		ts := unix.Timespec{Nsec: 100_000}
		for i := 0; i < sleeps; i++ {
			// The Go runtime's preemption signal (SIGURG, frequent
			// under -race) can cut a sleep short: that call counts,
			// and the sleep is made again.
			for {
				err := unix.Nanosleep(&ts, nil)
				nanosleeps++
				if err == nil {
					break
				}
				if err != unix.EINTR {
					return fmt.Errorf("nanosleep: %v", err)
				}
			}
		}
		anon, err := unix.Mmap(-1, 0, anonPg*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("mmap anon: %v", err)
		}
		for i := 0; i < anonPg; i++ {
			anon[i*pageSize] = 1
		}
		fm, err := unix.Mmap(int(src.Fd()), 0, filePg*4096, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap file: %v", err)
		}
		for i := 0; i < filePg*4096/pageSize; i++ {
			sink += uint64(fm[i*pageSize])
		}
		for i := 0; i < spinIter; i++ {
			sink = sink*31 + uint64(i)
		}
		if err := unix.Munmap(fm); err != nil {
			return err
		}
		return unix.Munmap(anon)
	})
	unix.Close(pp[1])
	unix.Close(sp[0])
	waitPipe()
	waitSock()
	unix.Close(sp[1])
	t.Logf("sink %d", sink)

	if !after.probeThreadReported {
		t.Fatalf("probe did not report thread %d", tid)
	}
	if after.probeTID != tid || after.probePID != os.Getpid() || after.probeComm == "" {
		t.Errorf("identity: tid %d pid %d comm %q, want tid %d pid %d and a name", after.probeTID, after.probePID, after.probeComm, tid, os.Getpid())
	}
	d := after.probe.Sub(before.probe)
	if !d.Measured.Has(metrics.FAll) {
		t.Errorf("measured %b, want every field %b (notes: %v)", d.Measured, metrics.FAll, p.Notes())
	}

	// Syscalls by name: exactly what the workload issued.
	for name, want := range map[string]uint64{
		"pread64": n, "pwrite64": n, "write": n + harnessWrites, "sendto": n, "getpid": getpids,
		"nanosleep": nanosleeps, "munmap": 2, "read": harnessReads,
	} {
		if got := d.SyscallsByName[name]; got != want {
			t.Errorf("syscalls_by_name[%s] = %d, want %d", name, got, want)
		}
	}
	var byName uint64
	for _, v := range d.SyscallsByName {
		byName += v
	}
	if byName != d.Syscalls {
		t.Errorf("syscalls %d != sum by name %d", d.Syscalls, byName)
	}
	t.Logf("syscalls %d by name %v", d.Syscalls, d.SyscallsByName)

	// Bytes by class: exactly what the workload moved.
	nk := uint64(n * k)
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"copied_to_user[file]", d.CopiedToUser[metrics.ClassFile], nk},
		{"copied_from_user[file]", d.CopiedFromUser[metrics.ClassFile], nk},
		{"copied_from_user[pipe]", d.CopiedFromUser[metrics.ClassPipe], nk + harnessPipeOutput},
		{"copied_to_user[pipe]", d.CopiedToUser[metrics.ClassPipe], harnessPipeIn},
		{"copied_to_user[socket]", d.CopiedToUser[metrics.ClassSocket], 0},
		{"copied_from_user[socket]", d.CopiedFromUser[metrics.ClassSocket], nk},
		{"delivered", d.DeliveredBytes, nk},
		{"received", d.ReceivedBytes, 0},
		{"moved_in_kernel", d.MovedInKernel.Total(), 0},
		// /proc rchar/wchar count read/write-family bytes (not sendto).
		{"rchar delta vs copied_to_user", after.rchar - before.rchar, d.CopiedToUser.Total()},
		{"wchar delta vs copied_from_user minus sendto", after.wchar - before.wchar, d.CopiedFromUser.Total() - nk},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}

	// The scheduler: the kernel's own per-thread counters.
	vol, invol := after.voluntary-before.voluntary, after.invol-before.invol
	if !within(d.CtxVoluntary, vol, 0.01, 2) {
		t.Errorf("ctx_switches_voluntary = %d, /proc says %d", d.CtxVoluntary, vol)
	}
	if !within(d.CtxInvoluntary, invol, 0.01, 2) {
		t.Errorf("ctx_switches_involuntary = %d, /proc says %d", d.CtxInvoluntary, invol)
	}
	if vol < sleeps {
		t.Errorf("only %d voluntary switches for %d sleeps", vol, sleeps)
	}
	rt := after.runtimeNs - before.runtimeNs
	if !within(d.CPUNs, rt, 0.05, 0) {
		t.Errorf("cpu_ns = %d, schedstat says %d (%.2f%% off); notes: %q", d.CPUNs, rt, 100*(float64(d.CPUNs)/float64(rt)-1), p.Notes())
	}
	flt := after.minflt + after.majflt - before.minflt - before.majflt
	if !within(d.PageFaults, flt, 0.01, 1) {
		t.Errorf("page_faults = %d, /proc minflt+majflt says %d", d.PageFaults, flt)
	}
	if d.PageFaults < anonPg {
		t.Errorf("page_faults = %d, want at least the %d anonymous pages touched", d.PageFaults, anonPg)
	}
	// Reading a cached file through a mapping faults at least once and at
	// most once per page; fault-around (16 pages) and, on 6.18 with ext4
	// large folios, whole-folio mapping make it far fewer than the pages.
	filePages := uint64(filePg * 4096 / pageSize)
	if d.FileFaults < 1 || d.FileFaults > filePages || d.FileFaults > d.PageFaults {
		t.Errorf("file_faults = %d, want between 1 and %d (pages touched) and at most page_faults %d", d.FileFaults, filePages, d.PageFaults)
	}
	t.Logf("ctx vol %d/%d invol %d/%d; cpu_ns %d vs %d; faults %d vs %d; file_faults %d; rchar %d wchar %d",
		d.CtxVoluntary, vol, d.CtxInvoluntary, invol, d.CPUNs, rt, d.PageFaults, flt, d.FileFaults,
		after.rchar-before.rchar, after.wchar-before.wchar)
}

// TestEBPFTransferPaths checks that sendfile, splice and MSG_ZEROCOPY on a
// loopback TCP socket land in the right metrics and classes.
func TestEBPFTransferPaths(t *testing.T) {
	p := openEBPFOrSkip(t)
	const (
		n = 64
		k = 16384
	)
	src := tempFile(t, n*k)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	var received int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		received, err = io.Copy(io.Discard, c)
		accepted <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f, err := conn.(*net.TCPConn).File() // a blocking dup of the socket
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sock := int(f.Fd())
	if err := unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		t.Fatalf("SO_ZEROCOPY: %v", err)
	}
	pp := pipe(t)
	zbuf, err := unix.Mmap(int(src.Fd()), 0, k, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(zbuf)

	var notes, copiedNotes int
	before, after, _ := runLocked(t, p, func() error {
		for i := 0; i < n; i++ {
			off := int64(i * k)
			if got, err := unix.Sendfile(sock, int(src.Fd()), &off, k); err != nil || got != k {
				return fmt.Errorf("sendfile: %d, %v", got, err)
			}
		}
		for i := 0; i < n; i++ {
			off := int64(i * k)
			if got, err := unix.Splice(int(src.Fd()), &off, pp[1], nil, k, 0); err != nil || got != k {
				return fmt.Errorf("splice file->pipe: %d, %v", got, err)
			}
			if got, err := unix.Splice(pp[0], nil, sock, nil, k, 0); err != nil || got != k {
				return fmt.Errorf("splice pipe->socket: %d, %v", got, err)
			}
		}
		for i := 0; i < n; i++ {
			if got, err := unix.SendmsgN(sock, zbuf, nil, nil, unix.MSG_ZEROCOPY); err != nil || got != k {
				return fmt.Errorf("sendmsg MSG_ZEROCOPY: %d, %v", got, err)
			}
		}
		// Reap the completion notifications: ids 0..n-1.
		var next uint32
		oob := make([]byte, 128)
		for i := 0; i < 10_000 && next < n; i++ {
			_, oobn, _, _, err := unix.Recvmsg(sock, nil, oob, unix.MSG_ERRQUEUE)
			if err == unix.EAGAIN {
				fds := []unix.PollFd{{Fd: int32(sock), Events: 0}}
				unix.Poll(fds, 10)
				continue
			}
			if err != nil {
				return fmt.Errorf("recvmsg MSG_ERRQUEUE: %v", err)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 {
				return fmt.Errorf("parse zerocopy notification: %v", err)
			}
			ee := (*unix.SockExtendedErr)(unsafe.Pointer(&msgs[0].Data[0]))
			if ee.Origin != unix.SO_EE_ORIGIN_ZEROCOPY {
				return fmt.Errorf("error queue: origin %d, not zerocopy", ee.Origin)
			}
			notes++
			if ee.Code&unix.SO_EE_CODE_ZEROCOPY_COPIED != 0 {
				copiedNotes++
			}
			next = ee.Data + 1
		}
		if next < n {
			return fmt.Errorf("only %d of %d zerocopy sends were notified", next, n)
		}
		return nil
	})
	conn.Close()
	f.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	nk := uint64(n * k)
	if received != int64(3*nk) {
		t.Errorf("receiver got %d bytes, want %d", received, 3*nk)
	}
	d := after.probe.Sub(before.probe)
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"moved_in_kernel[socket] (sendfile + splice to socket)", d.MovedInKernel[metrics.ClassSocket], 2 * nk},
		{"moved_in_kernel[pipe] (splice file->pipe)", d.MovedInKernel[metrics.ClassPipe], nk},
		{"zerocopy_bytes", d.ZerocopyBytes, nk},
		{"delivered_bytes", d.DeliveredBytes, 3 * nk},
		{"received_bytes (a pure sender)", d.ReceivedBytes, 0},
		{"copied_from_user (beyond the harness byte)", d.CopiedFromUser.Total(), harnessPipeOutput},
		{"copied_to_user (beyond the harness byte)", d.CopiedToUser.Total(), harnessPipeIn},
		{"sendfile calls", d.SyscallsByName["sendfile"], n},
		{"splice calls", d.SyscallsByName["splice"], 2 * n},
		{"sendmsg calls", d.SyscallsByName["sendmsg"], n},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	// On loopback every notification says the kernel copied; the probe turns
	// the copied id ranges back into bytes.
	if copiedNotes == notes && d.ZerocopyCopiedBytes != nk {
		t.Errorf("zerocopy_copied_bytes = %d, want %d (all %d notifications said copied)", d.ZerocopyCopiedBytes, nk, notes)
	}
	if copiedNotes == 0 && d.ZerocopyCopiedBytes != 0 {
		t.Errorf("zerocopy_copied_bytes = %d, want 0 (no notification said copied)", d.ZerocopyCopiedBytes)
	}
	t.Logf("zerocopy: %d notifications, %d copied; copied bytes %d of %d", notes, copiedNotes, d.ZerocopyCopiedBytes, d.ZerocopyBytes)
}

// TestEBPFUnwatchedNotCounted checks the in-kernel filter: a thread that is
// not watched leaves no counters, and a removed thread is forgotten.
func TestEBPFUnwatchedNotCounted(t *testing.T) {
	p := openEBPFOrSkip(t)
	_, after, tid := runLocked(t, p, func() error {
		for i := 0; i < 100; i++ {
			unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
		}
		return nil
	})
	if after.probe.SyscallsByName["getpid"] != 100 {
		t.Fatalf("watched thread: getpid = %d, want 100", after.probe.SyscallsByName["getpid"])
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	for other := range r.Threads {
		if other != tid {
			t.Errorf("thread %d was counted but never watched", other)
		}
	}
	if err := p.RemoveThreads(tid); err != nil {
		t.Fatal(err)
	}
	if r, err = p.Read(); err != nil {
		t.Fatal(err)
	}
	if th, ok := r.Threads[tid]; ok {
		t.Errorf("removed thread %d still reported: %+v", tid, th)
	}
}

// TestEBPFProcessAndNewThreads checks AddProcesses: threads the process
// creates after it is added are counted too.
func TestEBPFProcessAndNewThreads(t *testing.T) {
	p := openEBPFOrSkip(t)
	if err := p.AddProcesses(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	tidc := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // the thread exits with the goroutine
		for i := 0; i < 50; i++ {
			unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		tidc <- unix.Gettid()
	}()
	tid := <-tidc
	time.Sleep(20 * time.Millisecond)
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	th, ok := r.Threads[tid]
	if !ok || th.Counters.SyscallsByName["getppid"] != 50 {
		t.Fatalf("thread %d of the watched process: %+v, want 50 getppid", tid, th)
	}
	if err := p.AddProcesses(1 << 30); err == nil {
		t.Errorf("AddProcesses of a pid that does not exist: no error")
	}
}

// TestEBPFCloseFreesEverything checks that Close releases every fd the
// probe opened (programs, maps and links are all fds).
func TestEBPFCloseFreesEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the probes tests as root")
	}
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := count()
	p := openEBPFOrSkip(t)
	if err := p.AddThreads(unix.Gettid()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if after := count(); after != before {
		t.Errorf("%d fds open after Close, %d before", after, before)
	}
	if _, err := p.Read(); err == nil {
		t.Errorf("Read after Close: no error")
	}
}

// firstLineOf is a small helper for reading a child's announcement.
func firstLineOf(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestEBPFCgroupAndExitedProcess watches a fresh cgroup v2 and runs dd in
// a cgroup nested two levels below it: dd's reads of /dev/zero copy nothing, its writes to a file are
// counted byte for byte, dd is still named after it exits, and this test's own
// threads, outside the cgroup, are not counted.
func TestEBPFCgroupAndExitedProcess(t *testing.T) {
	p := openEBPFOrSkip(t)
	dd, err := exec.LookPath("dd")
	if err != nil {
		t.Skipf("dd not installed: %v", err)
	}
	root := cgroup2Mount(t)
	dir := filepath.Join(root, fmt.Sprintf("copyscope-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	// dd runs two levels below the watched cgroup: descendants count.
	nested := filepath.Join(dir, "pod", "container")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Skipf("cannot create nested cgroups: %v", err)
	}
	t.Cleanup(func() { os.Remove(nested); os.Remove(filepath.Dir(nested)) })
	if err := p.AddCgroup(dir); err != nil {
		t.Fatal(err)
	}
	if err := p.AddCgroup("/tmp"); err == nil || !strings.Contains(err.Error(), root) {
		t.Errorf("AddCgroup(/tmp) = %v, want an error naming the cgroup2 mount %s", err, root)
	}
	cg, err := os.Open(nested)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	const blocks, bs = 100, 4096
	out := filepath.Join(t.TempDir(), "dd.out")
	cmd := exec.Command(dd, "if=/dev/zero", "of="+out, fmt.Sprintf("bs=%d", bs), fmt.Sprintf("count=%d", blocks), "status=none")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd in cgroup: %v: %s", err, out)
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	var total metrics.Counters
	total.Measured = metrics.FAll
	for tid, th := range r.Threads {
		if th.PID == os.Getpid() {
			t.Errorf("thread %d of the test process (outside the cgroup) was counted", tid)
		}
		if !th.Exited || th.Comm != "dd" || th.PID != cmd.Process.Pid {
			t.Errorf("thread %d: pid %d comm %q exited %v, want dd's pid %d, comm dd, exited", tid, th.PID, th.Comm, th.Exited, cmd.Process.Pid)
		}
		total = total.Add(th.Counters)
	}
	// /dev/zero is zero-filled in place: no copy. The file writes are.
	if got := total.CopiedToUser[metrics.ClassOther]; got != 0 {
		t.Errorf("dd copied_to_user[other] = %d, want 0 (reads of /dev/zero copy nothing)", got)
	}
	if got, want := total.CopiedFromUser[metrics.ClassFile], uint64(blocks*bs); got != want {
		t.Errorf("dd copied_from_user[file] = %d, want %d (writes to %s)", got, want, out)
	}
	if total.SyscallsByName["read"] < blocks || total.SyscallsByName["write"] < blocks {
		t.Errorf("dd: %d reads, %d writes, want at least %d each", total.SyscallsByName["read"], total.SyscallsByName["write"], blocks)
	}
	t.Logf("dd in a cgroup: %d threads, %d syscalls", len(r.Threads), total.Syscalls)
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted (often
// /sys/fs/cgroup, /sys/fs/cgroup/unified on hybrid hosts), or skips.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Skip("no cgroup2 filesystem mounted: cgroup watching needs the unified hierarchy (mount -t cgroup2 none /sys/fs/cgroup)")
	return ""
}

// TestEBPFSyscallFamilies covers the other byte-moving syscalls: vectored
// and v2 reads and writes, recvfrom/recvmsg, sendmmsg/recvmmsg, tee, vmsplice,
// copy_file_range, and MSG_ZEROCOPY on a socket without SO_ZEROCOPY (which
// the kernel treats as an ordinary copying send).
func TestEBPFSyscallFamilies(t *testing.T) {
	p := openEBPFOrSkip(t)
	const n, k = 8, 4096
	src := tempFile(t, 2*n*k)
	if _, err := src.Seek(0, io.SeekStart); err != nil { // readv reads at the file offset
		t.Fatal(err)
	}
	dst := tempFile(t, 0)
	p1, p2 := pipe(t), pipe(t)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	dg, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dg[0])
	defer unix.Close(dg[1])
	// mmsg moves two datagrams of k/2 bytes in one sendmmsg or recvmmsg.
	mmsg := func(nr uintptr, fd int, a, b []byte) (int, error) {
		iov := []unix.Iovec{{Base: &a[0], Len: uint64(len(a))}, {Base: &b[0], Len: uint64(len(b))}}
		msgs := []unix.Mmsghdr{{Hdr: unix.Msghdr{Iov: &iov[0], Iovlen: 1}}, {Hdr: unix.Msghdr{Iov: &iov[1], Iovlen: 1}}}
		got, _, errno := unix.Syscall6(nr, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), 2, 0, 0, 0)
		if errno != 0 {
			return 0, errno
		}
		if got != 2 {
			return 0, fmt.Errorf("%d messages, want 2", got)
		}
		return int(msgs[0].Len + msgs[1].Len), nil
	}
	full := func(what string, got int, err error) error {
		if err != nil || got != k {
			return fmt.Errorf("%s: %d bytes, %v (want %d)", what, got, err, k)
		}
		return nil
	}
	before, after, _ := runLocked(t, p, func() error {
		buf := make([]byte, k)
		big := make([]byte, 2*k)
		for i := 0; i < n; i++ {
			off := int64(i * k)
			got, err := unix.Readv(int(src.Fd()), [][]byte{buf[:k/2], buf[k/2:]})
			if err := full("readv", got, err); err != nil {
				return err
			}
			got, err = unix.Preadv2(int(src.Fd()), [][]byte{buf}, off, 0)
			if err := full("preadv2", got, err); err != nil {
				return err
			}
			got, err = unix.Pwritev2(int(dst.Fd()), [][]byte{buf}, off, 0)
			if err := full("pwritev2", got, err); err != nil {
				return err
			}
			got, err = unix.SendmsgN(sp[0], buf, nil, nil, unix.MSG_ZEROCOPY)
			if err := full("sendmsg MSG_ZEROCOPY without SO_ZEROCOPY", got, err); err != nil {
				return err
			}
			got, _, err = unix.Recvfrom(sp[1], buf, unix.MSG_WAITALL)
			if err := full("recvfrom", got, err); err != nil {
				return err
			}
			got, err = unix.SendmsgN(sp[0], buf, nil, nil, 0)
			if err := full("sendmsg", got, err); err != nil {
				return err
			}
			got, _, _, _, err = unix.Recvmsg(sp[1], buf, nil, unix.MSG_WAITALL)
			if err := full("recvmsg", got, err); err != nil {
				return err
			}
			got, err = unix.Writev(p1[1], [][]byte{buf})
			if err := full("writev", got, err); err != nil {
				return err
			}
			got, err = unix.Vmsplice(p1[1], []unix.Iovec{{Base: &buf[0], Len: k}}, 0)
			if err := full("vmsplice", got, err); err != nil {
				return err
			}
			n64, err := unix.Tee(p1[0], p2[1], k, 0)
			if err := full("tee", int(n64), err); err != nil {
				return err
			}
			for got, j := 0, 0; got < 2*k && j < 100; j++ {
				m, err := unix.Read(p1[0], big[got:])
				if err != nil {
					return fmt.Errorf("read pipe: %v", err)
				}
				got += m
			}
			got, err = unix.Read(p2[0], buf)
			if err := full("read tee'd pipe", got, err); err != nil {
				return err
			}
			got, err = mmsg(unix.SYS_SENDMMSG, dg[0], buf[:k/2], buf[k/2:])
			if err := full("sendmmsg", got, err); err != nil {
				return err
			}
			got, err = mmsg(unix.SYS_RECVMMSG, dg[1], big[:k/2], big[k/2:k])
			if err := full("recvmmsg", got, err); err != nil {
				return err
			}
			roff, woff := off, off+int64(n*k)
			got, err = unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, k, 0)
			if err := full("copy_file_range", got, err); err != nil {
				return err
			}
		}
		return nil
	})
	d := after.probe.Sub(before.probe)
	nk := uint64(n * k)
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"copied_to_user[file] (readv, preadv2)", d.CopiedToUser[metrics.ClassFile], 2 * nk},
		{"copied_to_user[socket] (recvfrom, recvmsg, recvmmsg)", d.CopiedToUser[metrics.ClassSocket], 3 * nk},
		{"copied_to_user[pipe] (reads of both pipes)", d.CopiedToUser[metrics.ClassPipe], 3*nk + harnessPipeIn},
		{"copied_from_user[file] (pwritev2)", d.CopiedFromUser[metrics.ClassFile], nk},
		{"copied_from_user[socket] (sendmsg with and without MSG_ZEROCOPY, sendmmsg)", d.CopiedFromUser[metrics.ClassSocket], 3 * nk},
		{"copied_from_user[pipe] (writev)", d.CopiedFromUser[metrics.ClassPipe], nk + harnessPipeOutput},
		{"moved_in_kernel[pipe] (vmsplice, tee)", d.MovedInKernel[metrics.ClassPipe], 2 * nk},
		{"moved_in_kernel[file] (copy_file_range)", d.MovedInKernel[metrics.ClassFile], nk},
		{"zerocopy_bytes", d.ZerocopyBytes, 0},
		{"delivered_bytes", d.DeliveredBytes, 3 * nk},
		{"received_bytes (recvfrom, recvmsg, recvmmsg)", d.ReceivedBytes, 3 * nk},
		{"sendmmsg calls", d.SyscallsByName["sendmmsg"], n},
		{"recvmmsg calls", d.SyscallsByName["recvmmsg"], n},
		{"readv calls", d.SyscallsByName["readv"], n},
		{"preadv2 calls", d.SyscallsByName["preadv2"], n},
		{"pwritev2 calls", d.SyscallsByName["pwritev2"], n},
		{"recvfrom calls", d.SyscallsByName["recvfrom"], n},
		{"recvmsg calls", d.SyscallsByName["recvmsg"], n},
		{"sendmsg calls", d.SyscallsByName["sendmsg"], 2 * n},
		{"writev calls", d.SyscallsByName["writev"], n},
		{"vmsplice calls", d.SyscallsByName["vmsplice"], n},
		{"tee calls", d.SyscallsByName["tee"], n},
		{"copy_file_range calls", d.SyscallsByName["copy_file_range"], n},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}

// TestEBPFPageCacheAndDisk drops a file from the page cache and reads it
// back: every page comes back through the page cache (page_cache_misses)
// and from the disk (disk_read_bytes, attributed to the thread that issued
// the block requests). Skipped where the temp dir is not on a block device.
func TestEBPFPageCacheAndDisk(t *testing.T) {
	p := openEBPFOrSkip(t)
	const size = 1 << 20
	f := tempFile(t, size)
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if unix.Major(st.Dev) == 0 {
		t.Skipf("temp dir %s is not on a block device (device %d:%d): no disk reads to count; set TMPDIR to a disk-backed directory", os.TempDir(), unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	before, after, _ := runLocked(t, p, func() error {
		buf := make([]byte, 64<<10)
		for off := 0; off < size; off += len(buf) {
			if got, err := unix.Pread(int(f.Fd()), buf, int64(off)); err != nil || got != len(buf) {
				return fmt.Errorf("pread at %d: %d, %v", off, got, err)
			}
		}
		return nil
	})
	d := after.probe.Sub(before.probe)
	pages := uint64(size / os.Getpagesize())
	if d.PageCacheMisses != pages {
		t.Errorf("page_cache_misses = %d, want %d (every page of a dropped %d-byte file)", d.PageCacheMisses, pages, size)
	}
	if d.DiskReadBytes != size {
		t.Errorf("disk_read_bytes = %d, want %d", d.DiskReadBytes, size)
	}
	t.Logf("page_cache_misses %d, disk_read_bytes %d", d.PageCacheMisses, d.DiskReadBytes)
}

// TestEBPFDegradedAndRequired checks the two failure modes: an optional
// program that cannot attach costs its metrics and a note but nothing
// else, and a required one that cannot attach fails OpenEBPF, names the
// program and leaves nothing open.
func TestEBPFDegradedAndRequired(t *testing.T) {
	openEBPFOrSkip(t).Close() // skips with the reason when not permitted
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	missing := func(required bool) []progDesc {
		descs := ebpfPrograms()
		for i := range descs {
			if descs[i].name == "filemap_add_to_page_cache" {
				descs[i].event = "copyscope_no_such_event"
				descs[i].required = required
			}
		}
		return descs
	}

	p, err := openEBPF(EBPFOptions{}, missing(false), nil)
	if err != nil {
		t.Fatalf("an optional program that cannot attach failed OpenEBPF: %v", err)
	}
	defer p.Close()
	if p.Measured().Has(metrics.FPageCache) {
		t.Errorf("page cache misses still measured without their program")
	}
	if !p.Measured().Has(metrics.FSyscalls | metrics.FPageFaults | metrics.FCPU) {
		t.Errorf("other metrics lost with one optional program: measured %b", p.Measured())
	}
	var noted bool
	for _, n := range p.Notes() {
		if strings.Contains(n, "filemap_add_to_page_cache") && strings.Contains(n, "page_cache_misses are missing") {
			noted = true
		}
	}
	if !noted {
		t.Errorf("no note explains the missing program: %q", p.Notes())
	}
	if err := p.AddThreads(unix.Gettid()); err != nil {
		t.Fatal(err)
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if th := r.Threads[unix.Gettid()]; th.Counters.Measured.Has(metrics.FPageCache) {
		t.Errorf("a thread's counters claim page cache misses are measured")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	before := fds()
	if _, err := openEBPF(EBPFOptions{}, missing(true), nil); err == nil {
		t.Fatalf("a required program that cannot attach did not fail OpenEBPF")
	} else if !strings.Contains(err.Error(), "filemap_add_to_page_cache") {
		t.Errorf("the error does not name the program: %v", err)
	}
	if after := fds(); after != before {
		t.Errorf("%d fds open after a failed OpenEBPF, %d before", after, before)
	}
}

// TestEBPFZombie checks that a watched process that has exited but not
// been reaped is reported as exited, and cannot be newly watched.
func TestEBPFZombie(t *testing.T) {
	p := openEBPFOrSkip(t)
	cmd := exec.Command("/bin/sh", "-c", "read x; exit 0")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start /bin/sh: %v", err)
	}
	pid := cmd.Process.Pid
	if err := p.AddProcesses(pid); err != nil {
		t.Fatal(err)
	}
	stdin.Close() // sh reads EOF and exits; not reaped until Wait
	zombie := false
	for i := 0; i < 2000 && !zombie; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		zombie = len(f) > 0 && f[0] == "Z"
		time.Sleep(time.Millisecond)
	}
	if !zombie {
		cmd.Wait()
		t.Fatalf("sh %d did not become a zombie", pid)
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	th, ok := r.Threads[pid]
	if !ok || !th.Exited || th.PID != pid || th.Counters.SyscallsByName["exit_group"] != 1 {
		t.Errorf("zombie sh: %+v, want its thread, exited, with one exit_group", th)
	}
	if err := p.AddProcesses(pid); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("AddProcesses of a zombie: %v, want an error saying it exited", err)
	}
	cmd.Wait()
}

// TestEBPFVerifierLogInError checks that a required program the verifier
// rejects fails OpenEBPF with the verifier's own log in the error.
func TestEBPFVerifierLogInError(t *testing.T) {
	openEBPFOrSkip(t).Close()
	broken := func(obj string, spec *ebpf.CollectionSpec) {
		if ps := spec.Programs["sys_exit"]; ps != nil {
			// Return a register that was never written.
			ps.Instructions = asm.Instructions{asm.Mov.Reg(asm.R0, asm.R5), asm.Return()}
		}
	}
	_, err := openEBPF(EBPFOptions{}, ebpfPrograms(), broken)
	if err == nil {
		t.Fatal("a program the verifier must reject loaded")
	}
	t.Logf("%v", err)
	for _, want := range []string{"sys_exit", "!read_ok"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q (the program name and the verifier log): %v", want, err)
		}
	}
}

// TestEBPFThreadCreation checks that a thread creation counts as one
// clone3, not two: the new thread's first return from clone3 passes the
// syscall-exit tracepoint too, though it never entered the syscall.
func TestEBPFThreadCreation(t *testing.T) {
	for _, opts := range []EBPFOptions{{}, {CountAtEntry: true}} {
		t.Run(fmt.Sprintf("count-at-entry=%v", opts.CountAtEntry), func(t *testing.T) {
			p := openEBPFOrSkip(t, opts)
			// The interpreter itself, not a wrapper script (pyenv shims
			// fork helpers of their own).
			out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
			if err != nil {
				t.Skipf("python3 not usable: %v", err)
			}
			py := strings.TrimSpace(string(out))
			// The shell stops itself so the probe is attached before
			// python runs; exec keeps the pid.
			cmd := exec.Command("sh", "-c", `kill -STOP $$; exec "$@"`, "sh", py, "-c",
				"import threading\nfor _ in range(3):\n t = threading.Thread(target=lambda: None); t.start(); t.join()")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			stopped := false
			for i := 0; i < 2000 && !stopped; i++ {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
				stopped = len(f) > 0 && f[0] == "T"
				time.Sleep(time.Millisecond)
			}
			if !stopped {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("the shell never stopped itself")
			}
			if err := p.AddProcesses(pid); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("python: %v", err)
			}
			r, err := p.Read()
			if err != nil {
				t.Fatal(err)
			}
			var clones uint64
			for _, th := range r.Threads {
				clones += th.Counters.SyscallsByName["clone3"] + th.Counters.SyscallsByName["clone"]
			}
			if clones != 3 {
				t.Errorf("clone/clone3 counted %d times for 3 threads started", clones)
			}
			if len(r.Threads) != 4 {
				t.Errorf("%d threads reported, want python's main thread and its 3", len(r.Threads))
			}
		})
	}
}
