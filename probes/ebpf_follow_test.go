//go:build linux && amd64

package probes

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/metrics"
)

// stoppedShell starts sh -c script behind a SIGSTOP, so the probe can be
// set up before the script runs; it returns the shell's pid.
func stoppedShell(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command("sh", append([]string{"-c", "kill -STOP $$; " + script, "sh"}, args...)...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'T' {
			return c
		}
		if time.Now().After(end) {
			t.Fatal("the shell did not stop itself")
		}
	}
}

// byProcess sums a reading's threads per process.
func byProcess(r Reading) map[int]metrics.Counters {
	out := map[int]metrics.Counters{}
	for _, th := range r.Threads {
		c, ok := out[th.PID]
		if !ok {
			out[th.PID] = th.Counters
			continue
		}
		out[th.PID] = c.Add(th.Counters)
	}
	return out
}

// TestEBPFFollowsChildren: a watched shell forks three dd processes; each
// is watched from its first syscall (the execve it makes in the forked
// child, before dd runs), and writes exactly what dd was told to write.
// With NoFollowChildren only the shell is counted.
func TestEBPFFollowsChildren(t *testing.T) {
	const children, blocks, bs = 3, 50, 4096
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			p := openEBPFOrSkip(t, EBPFOptions{NoFollowChildren: !follow})
			out := filepath.Join(t.TempDir(), "out")
			sh := stoppedShell(t, `for i in 1 2 3; do dd if=/dev/zero of="$1" bs=`+strconv.Itoa(bs)+` count=`+strconv.Itoa(blocks)+` status=none; done`, out)
			if err := p.AddProcesses(sh.Process.Pid); err != nil {
				t.Fatal(err)
			}
			if err := sh.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if err := sh.Wait(); err != nil {
				t.Fatalf("the shell: %v", err)
			}
			r, err := p.Read()
			if err != nil {
				t.Fatal(err)
			}
			procs := byProcess(r)
			var kids []int
			var written uint64
			for pid, c := range procs {
				if pid == sh.Process.Pid {
					continue
				}
				kids = append(kids, pid)
				written += c.CopiedFromUser[metrics.ClassFile]
				if c.SyscallsByName["execve"] != 1 {
					t.Errorf("child %d: %d execve counted, want 1 (watched from its first syscall)", pid, c.SyscallsByName["execve"])
				}
				if c.SyscallsByName["write"] != blocks {
					t.Errorf("child %d: %d writes, want %d", pid, c.SyscallsByName["write"], blocks)
				}
			}
			t.Logf("follow=%v: processes counted %v (shell %d)", follow, kids, sh.Process.Pid)
			if _, ok := procs[sh.Process.Pid]; !ok {
				t.Errorf("the watched shell %d itself was not counted", sh.Process.Pid)
			}
			want, wantBytes := children, uint64(children*blocks*bs)
			if !follow {
				want, wantBytes = 0, 0
			}
			if len(kids) != want || written != wantBytes {
				t.Errorf("%d child processes counted writing %d bytes to files, want %d writing %d", len(kids), written, want, wantBytes)
			}
		})
	}
}

// TestEBPFFollowsExecByName: a process not watched when it starts execs
// into a program with a name watched by FollowComm; it is counted from
// the execve that made it that program, and its exit clears its id.
func TestEBPFFollowsExecByName(t *testing.T) {
	p := openEBPFOrSkip(t)
	f, ok := p.(interface{ FollowComm(string) error })
	if !ok {
		t.Fatal("the eBPF probe does not implement FollowComm")
	}
	dd, err := exec.LookPath("dd")
	if err != nil {
		t.Skipf("dd not installed: %v", err)
	}
	name := "csfollow" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(dd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.FollowComm(name); err != nil {
		t.Fatal(err)
	}
	const blocks = 70
	sh := stoppedShell(t, `exec "$1" if=/dev/zero of=/dev/null bs=512 count=`+strconv.Itoa(blocks)+` status=none`, bin)
	if err := sh.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := sh.Wait(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := byProcess(r)[sh.Process.Pid]
	if !ok {
		t.Fatalf("the process that exec'd into %s (pid %d) was not counted; threads %v", name, sh.Process.Pid, r.Threads)
	}
	if c.SyscallsByName["execve"] != 1 || c.SyscallsByName["write"] != blocks || c.SyscallsByName["read"] < blocks {
		t.Errorf("%s: execve %d, write %d, read %d; want 1 (counted from the exec), %d and at least %d",
			name, c.SyscallsByName["execve"], c.SyscallsByName["write"], c.SyscallsByName["read"], blocks, blocks)
	}
	// The shell's syscalls before the exec were not watched: a stopped
	// shell's own kill and the first wait are not in the count.
	if c.SyscallsByName["kill"] != 0 {
		t.Errorf("the shell's kill before the exec was counted (%d): watched too early", c.SyscallsByName["kill"])
	}
}

// TestAffectedNamesMetrics: a note about a program missing events names
// the metrics that then read low.
func TestAffectedNamesMetrics(t *testing.T) {
	for prog, want := range map[string]string{
		faultsProgBlockRqComplete: "disk_read_bytes may read low",
		schedProgSchedSwitch:      "ctx_switches, cpu_ns may read low",
		syscallsProgSysExit:       "delivered_bytes",
	} {
		if got := affected(prog); !strings.Contains(got, want) {
			t.Errorf("affected(%s) = %q, want it to contain %q", prog, got, want)
		}
	}
}

// TestEBPFPorts: a thread that sends on two sockets, one to a kept port
// and one to another: with Ports, only the kept socket's bytes count;
// with TrackPorts, the thread carries the local port it last sent from.
func TestEBPFPorts(t *testing.T) {
	lnKept, lnOther := listenDiscard(t), listenDiscard(t)
	kept := lnKept.Addr().(*net.TCPAddr).Port
	const n, k = 20, 4096
	p := openEBPFOrSkip(t, EBPFOptions{Ports: []int{kept}, TrackPorts: true})
	var local, port int
	_, _, tid := runLocked(t, p, func() error {
		a, err := net.Dial("tcp", lnKept.Addr().String())
		if err != nil {
			return err
		}
		defer a.Close()
		b, err := net.Dial("tcp", lnOther.Addr().String())
		if err != nil {
			return err
		}
		defer b.Close()
		local = a.LocalAddr().(*net.TCPAddr).Port
		fa, _ := a.(*net.TCPConn).File()
		fb, _ := b.(*net.TCPConn).File()
		defer fa.Close()
		defer fb.Close()
		buf := make([]byte, k)
		for range n {
			if _, err := unix.Write(int(fb.Fd()), buf); err != nil {
				return err
			}
			if _, err := unix.Write(int(fa.Fd()), buf); err != nil {
				return err
			}
		}
		// The port while the thread lives (its reading is its own, after
		// its last send).
		r, err := p.Read()
		port = r.Threads[unix.Gettid()].Port
		return err
	})
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	th := r.Threads[tid]
	if got := th.Counters.DeliveredBytes; got != n*k {
		t.Errorf("delivered %d bytes, want %d: only the kept port's socket counts", got, n*k)
	}
	if got := th.Counters.CopiedFromUser[metrics.ClassSocket]; got != n*k {
		t.Errorf("copied_from_user[socket] = %d, want %d", got, n*k)
	}
	if port != local {
		t.Errorf("thread's port %d, want %d, the local port of the socket it last sent on", port, local)
	}
}

// listenDiscard listens on a loopback port and reads and drops whatever
// each connection sends.
func listenDiscard(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln
}
