package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// straceCounts parses the summary table of strace -c: calls per syscall.
func straceCounts(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read strace summary: %v", err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "-") || f[len(f)-1] == "total" {
			continue
		}
		n, err := strconv.ParseUint(f[3], 10, 64)
		if err != nil {
			t.Fatalf("strace summary line %q: calls column: %v", line, err)
		}
		out[f[len(f)-1]] = n
	}
	if len(out) == 0 {
		t.Fatalf("no syscalls in the strace summary:\n%s", b)
	}
	return out
}

// watchCounts sums syscalls_by_name over every record of watch --json.
func watchCounts(t *testing.T, out string) map[string]uint64 {
	t.Helper()
	sum := map[string]uint64{}
	for _, r := range watchJSON(t, out) {
		by, _ := r["syscalls_by_name"].(map[string]any)
		for k, v := range by {
			sum[k] += uint64(v.(float64))
		}
	}
	return sum
}

// waitFor polls cond every 20ms up to timeout.
func waitFor(timeout time.Duration, cond func() bool) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// straceAttach runs strace -c -f on pid and returns once it has attached,
// with a function that ends it (SIGINT, or waiting for the tracee's exit)
// and returns the summary.
func straceAttach(t *testing.T, pid int) (finish func(interrupt bool) map[string]uint64) {
	t.Helper()
	summary := filepath.Join(t.TempDir(), "strace.txt")
	st := exec.Command("strace", "-c", "-f", "-o", summary, "-p", strconv.Itoa(pid))
	errp, err := st.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatalf("start strace: %v", err)
	}
	t.Cleanup(func() { st.Process.Kill(); st.Wait() })
	attached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(errp)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "attached") {
				close(attached)
				once = true
			}
		}
		if !once {
			close(attached)
		}
	}()
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
		t.Fatal("strace did not attach within 10s")
	}
	return func(interrupt bool) map[string]uint64 {
		if interrupt {
			st.Process.Signal(os.Interrupt)
		}
		done := make(chan error, 1)
		go func() { done <- st.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("strace did not finish within 30s")
		}
		return straceCounts(t, summary)
	}
}

// startWatch runs watch --json --mode ebpf on pid in this process and
// returns once the probes are attached, with a function that waits for it
// (after cancelling it when stop is true) and returns its stdout.
func startWatch(t *testing.T, pid int) (wait func(stop bool) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs([]string{"watch", "--pid", strconv.Itoa(pid), "--json", "--mode", "ebpf", "--interval", "500ms"})
		root.SetOut(&out)
		root.SetErr(&errb)
		done <- root.ExecuteContext(ctx)
	}()
	if !waitFor(30*time.Second, func() bool { return strings.Contains(errb.String(), "copyscope: watching") }) {
		t.Fatalf("watch did not attach within 30s:\n%s", errb.String())
	}
	return func(stop bool) string {
		if stop {
			cancel()
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch: %v\n%s", err, errb.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("watch did not end")
		}
		return out.String()
	}
}

// compareCounts reports every syscall whose counts differ, leaving out
// the names in skip (idle loops whose count depends on the exact window).
func compareCounts(t *testing.T, strace, watch map[string]uint64, skip map[string]bool) {
	t.Helper()
	var names []string
	for k := range strace {
		names = append(names, k)
	}
	for k := range watch {
		if _, ok := strace[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	compared := 0
	for _, n := range names {
		s, w := strace[n], watch[n]
		fmt.Fprintf(&b, "  %-18s strace %8d  watch %8d\n", n, s, w)
		switch {
		case skip[n]:
		case n == "exit_group" || n == "exit":
			// strace -c counts a syscall when it returns; these never do.
		default:
			compared++
			if s != w {
				t.Errorf("%s: strace -c counted %d, watch %d", n, s, w)
			}
		}
	}
	t.Logf("per-syscall counts (%d compared):\n%s", compared, b.String())
	if compared < 3 {
		t.Errorf("only %d syscalls compared: the workload did too little", compared)
	}
}

// stoppedChild starts argv behind a shell that stops itself first, so
// watch and strace can attach before the program runs; exec keeps the pid.
func stoppedChild(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command("sh", append([]string{"-c", `kill -STOP $$; exec "$@"`, "sh"}, argv...)...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Process.Pid))
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && i+2 < len(b) && b[i+2] == 'T'
	}) {
		t.Fatal("the child did not stop itself")
	}
	return c
}

func straceOrSkip(t *testing.T) {
	t.Helper()
	ebpfOrSkip(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not installed (apt-get install strace): cannot compare with it")
	}
	if testing.Short() {
		t.Skip("-short: the strace comparisons take about 30s")
	}
}

// TestWatchAgreesWithStrace: watch in eBPF mode on programs we did not
// write counts the same syscalls as strace -c -f of the same run.
func TestWatchAgreesWithStrace(t *testing.T) {
	straceOrSkip(t)
	data := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(data, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"dd", []string{"dd", "if=" + data, "of=/dev/null", "bs=64k", "status=none"}},
		{"cat", []string{"cat", data, data, data}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := stoppedChild(t, tc.argv...)
			pid := c.Process.Pid
			wait := startWatch(t, pid)
			finish := straceAttach(t, pid)
			if err := c.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			st := finish(false) // strace ends with its tracee
			w := watchCounts(t, wait(false))
			compareCounts(t, st, w, nil)
		})
	}
	t.Run("http.server", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("python3 is not installed: cannot run http.server")
		}
		dir := filepath.Dir(data)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		srv := exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, port)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
		if !waitFor(20*time.Second, func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err == nil {
				c.Close()
			}
			return err == nil
		}) {
			t.Fatal("http.server did not listen within 20s")
		}
		// Give the server's probe connection above time to be served.
		time.Sleep(300 * time.Millisecond)
		wait := startWatch(t, srv.Process.Pid)
		finish := straceAttach(t, srv.Process.Pid)
		time.Sleep(300 * time.Millisecond) // strace attaches every thread
		const requests = 10
		for i := range requests {
			c, err := net.Dial("tcp", "127.0.0.1:"+port)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /data.bin HTTP/1.0\r\nHost: x\r\n\r\n")
			n, err := io.Copy(io.Discard, c)
			c.Close()
			if err != nil || n < 8<<20 {
				t.Fatalf("request %d: read %d bytes, %v", i, n, err)
			}
		}
		time.Sleep(500 * time.Millisecond) // handler threads exit
		st := finish(true)
		w := watchCounts(t, wait(true))
		// The server's idle loop polls every 0.5s and its threads meet on
		// futexes: their counts depend on the exact window, not the work.
		skip := map[string]bool{"poll": true, "select": true, "pselect6": true, "ppoll": true,
			"futex": true, "restart_syscall": true, "clock_nanosleep": true, "epoll_wait": true, "rt_sigprocmask": true}
		compareCounts(t, st, w, skip)
		if st["accept4"] != requests && st["accept"] != requests {
			t.Errorf("strace saw %d accept4 calls, want %d: the comparison did not cover the requests", st["accept4"], requests)
		}
	})
}
