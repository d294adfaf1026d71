package transfer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// knownN is the span size of the known transfer: a multiple of every test
// chunk, so the arithmetic is exact.
const knownN = 4 << 20

var knownFrame = []byte("framing-bytes-of-a-fetch-response")

// arithmetic returns the syscalls a path must make for one Send of
// knownFrame followed by one span of n bytes in chunks of c, then Close:
// the per-chunk calls plus a constant few. The second map is the number of
// extra attempts tolerated per name (short writes, EINTR, reaping).
func arithmetic(name string, n, c int) (want, slack map[string]uint64) {
	k := uint64(n / c)
	// A response longer than a chunk is corked and uncorked: two
	// setsockopt calls (zerocopy adds one for SO_ZEROCOPY).
	switch name {
	case "read":
		return map[string]uint64{"pread64": k, "write": k + 1, "setsockopt": 2}, map[string]uint64{"write": 3, "pread64": 1}
	case "mmap":
		return map[string]uint64{"write": k + 1, "fstat": 1, "mmap": 1, "munmap": 1, "setsockopt": 2}, map[string]uint64{"write": 3}
	case "sendfile":
		return map[string]uint64{"sendfile": k, "write": 1, "setsockopt": 2}, map[string]uint64{"sendfile": 3}
	case "splice":
		return map[string]uint64{"splice": 2 * k, "write": 1, "pipe2": 1, "fcntl": 1, "close": 2, "setsockopt": 2}, map[string]uint64{"splice": 3, "fcntl": 1}
	case "zerocopy":
		// Error-queue reads: one per notification (at most one per
		// send) plus one empty read per reap round: after every
		// zcReapBytes sent, at the end of Send, and per ppoll in Close.
		return map[string]uint64{"sendmsg": k, "write": 1, "setsockopt": 3, "fstat": 1, "mmap": 1, "munmap": 1, "recvmsg": 1},
			map[string]uint64{"sendmsg": 3, "recvmsg": k + uint64(n/zcReapBytes) + 2 + 16, "ppoll": 16}
	case "uring", "uring-splice", "uring-zc":
		return uringArithmetic(name, n, c)
	}
	panic("unknown path " + name)
}

// checkArithmetic compares a ledger with the path's arithmetic.
func checkArithmetic(t *testing.T, name string, chunk int, l Ledger) {
	t.Helper()
	want, slack := arithmetic(name, knownN, chunk)
	for call, w := range want {
		got := l.Calls[call]
		if got < w || got > w+slack[call] {
			t.Errorf("%s chunk %d: ledger %s = %d, arithmetic says %d (+%d tolerated)", name, chunk, call, got, w, slack[call])
		}
	}
	for call, got := range l.Calls {
		if _, ok := want[call]; !ok && got > slack[call] {
			t.Errorf("%s chunk %d: ledger has %d %s calls the arithmetic does not expect", name, chunk, got, call)
		}
	}
	if l.SpanBytes != knownN || l.BytesSent != knownN+uint64(len(knownFrame)) {
		t.Errorf("%s: ledger bytes sent %d (span %d), want %d (span %d)", name, l.BytesSent, l.SpanBytes, knownN+len(knownFrame), knownN)
	}
}

// knownTransfer sends knownFrame + a knownN span of a temp file over path
// name to a loopback receiver on the calling (locked) thread, closes the
// path and returns its ledger. around runs on the same thread right after
// the socket is connected and right after Close, to mark the region.
func knownTransfer(t *testing.T, name string, chunk int, around func()) Ledger {
	t.Helper()
	f := writeTempFile(t, t.TempDir(), "seg.log", knownN, 7)
	rcv := newReceiver(t)
	sock := dialBlocking(t, rcv.ln.Addr())
	p, err := New(name, Options{Chunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	around()
	if _, err := p.Send(sock, []Part{{Bytes: knownFrame}, {Span: Span{Fd: int(f.Fd()), Off: 0, Len: knownN}}}); err != nil {
		t.Fatalf("%s Send: %v", name, err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("%s Close: %v", name, err)
	}
	around()
	unix.Close(sock)
	if res := rcv.wait(t); res.n != knownN+int64(len(knownFrame)) {
		t.Fatalf("%s: receiver got %d bytes, want %d", name, res.n, knownN+len(knownFrame))
	}
	return p.Ledger()
}

// threadIO is /proc/thread-self/io.
type threadIO struct{ rchar, wchar, syscr, syscw int64 }

// readThreadIO reads the calling thread's io counters with one pread on an
// already open fd. That pread is counted too (syscr +1, rchar +len): the
// caller subtracts it.
func readThreadIO(fd int) (threadIO, int, error) {
	buf := make([]byte, 512)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return threadIO{}, 0, fmt.Errorf("read /proc/thread-self/io: %w", err)
	}
	var io threadIO
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		x, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "rchar":
			io.rchar = x
		case "wchar":
			io.wchar = x
		case "syscr":
			io.syscr = x
		case "syscw":
			io.syscw = x
		}
	}
	return io, n, nil
}

// TestSyscallsThreadIO checks each path's ledger and arithmetic against the
// kernel's per-thread io counters. Found by experiment on Linux 6.18:
// read/pread64 bump syscr, write/writev bump syscw, sendfile bumps both
// (rchar and wchar by its bytes); splice, sendmsg (with or without
// MSG_ZEROCOPY), recvmsg, fstat, mmap bump neither, so for splice and
// zerocopy this counter sees only the framing write and the strace test is
// the independent check of their data calls.
func TestSyscallsThreadIO(t *testing.T) {
	for _, name := range Names() {
		for _, chunk := range testChunks {
			t.Run(fmt.Sprintf("%s/%d", name, chunk), func(t *testing.T) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				iofd, err := unix.Open("/proc/thread-self/io", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Skipf("per-thread io counters unavailable (%v): kernel without CONFIG_TASK_IO_ACCOUNTING", err)
				}
				defer unix.Close(iofd)
				var before, after threadIO
				var beforeLen, calls int
				l := knownTransfer(t, name, chunk, func() {
					io, n, err := readThreadIO(iofd)
					if err != nil {
						t.Fatal(err)
					}
					if calls == 0 {
						before, beforeLen = io, n
					} else {
						after = io
					}
					calls++
				})
				checkArithmetic(t, name, chunk, l)
				syscr := after.syscr - before.syscr - 1 // the measuring pread
				syscw := after.syscw - before.syscw
				rchar := after.rchar - before.rchar - int64(beforeLen)
				wchar := after.wchar - before.wchar
				writes := int64(l.Calls["write"] + l.Calls["writev"])
				var wantR, wantW, wantRchar, wantWchar int64
				switch name {
				case "read":
					wantR, wantW, wantRchar, wantWchar = int64(l.Calls["pread64"]), writes, knownN, int64(l.BytesSent)
				case "mmap":
					wantR, wantW, wantRchar, wantWchar = 0, writes, 0, int64(l.BytesSent)
				case "sendfile":
					sf := int64(l.Calls["sendfile"])
					wantR, wantW, wantRchar, wantWchar = sf, sf+writes, knownN, int64(l.BytesSent)
				case "splice", "zerocopy", "uring", "uring-splice", "uring-zc":
					// io_uring ops bypass vfs_read/vfs_write, where
					// the io counters are bumped.
					wantR, wantW, wantRchar, wantWchar = 0, writes, 0, int64(len(knownFrame))
				}
				if syscr != wantR || syscw != wantW {
					t.Errorf("%s chunk %d: thread io syscr %d syscw %d, ledger says %d and %d (ledger %v)", name, chunk, syscr, syscw, wantR, wantW, l.Calls)
				}
				if rchar != wantRchar || wchar != wantWchar {
					t.Errorf("%s chunk %d: thread io rchar %d wchar %d, want %d and %d", name, chunk, rchar, wchar, wantRchar, wantWchar)
				}
			})
		}
	}
}

// straceEnv tells a re-executed test binary to run one known transfer.
const straceEnv = "COPYSCOPE_TRANSFER_STRACE_CHILD"

// straceResult is what the child reports back.
type straceResult struct {
	TID    int
	Ledger Ledger
}

// TestStraceChild is the child side of TestSyscallsStrace; it does nothing
// unless straceEnv is set.
func TestStraceChild(t *testing.T) {
	spec := os.Getenv(straceEnv)
	if spec == "" {
		t.Skip("child of TestSyscallsStrace only (runs when " + straceEnv + " is set)")
	}
	var name, out string
	var chunk int
	if _, err := fmt.Sscanf(spec, "%s %d %s", &name, &chunk, &out); err != nil {
		t.Fatalf("bad %s=%q: %v", straceEnv, spec, err)
	}
	// Enough Ps that a data thread returning from a blocking syscall finds
	// an idle one (exitsyscall's fast path) instead of sleeping on a
	// futex until one frees up: what a thread-per-connection server wants
	// (GOMAXPROCS above its busy data threads).
	runtime.GOMAXPROCS(max(8, runtime.NumCPU()))
	done := make(chan straceResult, 1)
	go func() {
		// Stays locked: the thread exits with the goroutine, so nothing
		// else ever runs on it, not even writing the result.
		runtime.LockOSThread()
		// getppid marks the start and end of the counted region.
		l := knownTransfer(t, name, chunk, func() { unix.Getppid() })
		done <- straceResult{TID: unix.Gettid(), Ledger: l}
	}()
	res := <-done
	b, _ := json.Marshal(res)
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var straceCall = regexp.MustCompile(`^(\d+) +([a-z0-9_]+)\(`)

// TestSyscallsStrace runs one known transfer per path in a child test
// binary under strace -f and counts the data thread's syscalls by name
// (lines of that tid), against the ledger and the arithmetic.
func TestSyscallsStrace(t *testing.T) {
	if testing.Short() {
		t.Skip("strace runs skipped in -short mode")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (apt-get install strace): syscall counts checked by TestSyscallsThreadIO only")
	}
	traced := "getppid,pread64,read,write,writev,sendfile,splice,sendmsg,recvmsg,mmap,munmap,fstat,pipe2,fcntl,setsockopt,ppoll,close," +
		"io_uring_setup,io_uring_enter," +
		"futex,epoll_wait,epoll_pwait,epoll_pwait2,nanosleep,sched_yield"
	for _, name := range Names() {
		chunk := 64 << 10
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, trace := dir+"/result.json", dir+"/strace.txt"
			cmd := exec.Command(strace, "-f", "-qq", "-s", "0", "-e", "signal=none", "-e", "trace="+traced, "-o", trace,
				os.Args[0], "-test.run=^TestStraceChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %s", straceEnv, name, chunk, out))
			if b, err := cmd.CombinedOutput(); err != nil {
				if strings.Contains(string(b), "ptrace") || strings.Contains(string(b), "Operation not permitted") {
					t.Skipf("strace cannot trace here (%v): %s", err, b)
				}
				t.Fatalf("strace child: %v\n%s", err, b)
			}
			var res straceResult
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("child result: %v", err)
			}
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			counts, err := countStrace(trace, res.TID)
			if err != nil {
				t.Fatal(err)
			}
			checkArithmetic(t, name, chunk, res.Ledger)
			// The ledger must match strace exactly for the calls it makes.
			// mmap/munmap may also come from the Go runtime growing the
			// heap on this thread, so strace may see more of those.
			for call, n := range res.Ledger.Calls {
				got := counts[call]
				if got != n && !((call == "mmap" || call == "munmap") && got > n) {
					t.Errorf("%s: strace saw %d %s calls on thread %d, ledger says %d", name, got, call, res.TID, n)
				}
			}
			// Nothing else, except that the Go scheduler may wake or
			// wait around a blocking call that slept (a futex when its P
			// was handed off during a long syscall; under strace every
			// call is long): a few, never one per chunk, never epoll.
			var sched, total uint64
			for _, n := range res.Ledger.Calls {
				total += n
			}
			for call, n := range counts {
				if _, ok := res.Ledger.Calls[call]; ok || call == "mmap" || call == "munmap" {
					continue
				}
				if call == "futex" || call == "nanosleep" || call == "sched_yield" {
					sched += n
					continue
				}
				t.Errorf("%s: strace saw %d %s calls on the data thread the ledger does not know", name, n, call)
			}
			if sched > 2+total/10 {
				t.Errorf("%s: %d Go scheduler calls (futex/nanosleep/sched_yield) on the data thread for %d path calls, want at most 2+10%%", name, sched, total)
			}
			t.Logf("%s chunk %d: strace on data thread %d: %v; ledger %v", name, chunk, res.TID, counts, res.Ledger.Calls)
		})
	}
}

// countStrace counts syscall entries of one thread in strace -f output.
func countStrace(path string, tid int) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open strace output: %w", err)
	}
	defer f.Close()
	counts := map[string]uint64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	markers := 0
	for sc.Scan() {
		m := straceCall.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != strconv.Itoa(tid) {
			continue
		}
		if m[2] == "getppid" {
			markers++
			continue
		}
		if markers == 1 {
			counts[m[2]]++
		}
	}
	if markers != 2 {
		return nil, fmt.Errorf("strace output has %d getppid markers on thread %d, want 2", markers, tid)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(counts) == 0 {
		return nil, errors.New("strace recorded no syscalls for the data thread")
	}
	return counts, nil
}
