package main

import (
	"context"
	"encoding/json"
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

	"github.com/copyscope/copyscope/probes"
)

// The tests in this file watch real servers nobody here wrote (iperf3,
// haproxy, lighttpd, redis, an rsync daemon) and check watch twice over:
// its syscall counts against strace -c -f of the same run, and its bytes,
// directional copies and verdicts against the workload's own arithmetic.
// Each skips, saying which package to install, when its program is
// missing; .ci/run installs them all.

// needPrograms skips the test unless every program is installed and the
// strace comparison can run.
func needPrograms(t *testing.T, pkgs map[string]string) {
	t.Helper()
	straceOrSkip(t)
	for prog, pkg := range pkgs {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed (apt-get install %s): cannot watch it", prog, pkg)
		}
	}
}

// listening reports whether a TCP socket listens on 127.0.0.1:port, from
// /proc/net/tcp (state 0A), without connecting: a connection would be a
// request to the server.
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			return true
		}
	}
	return false
}

// startServer runs argv in the background (killed when the test ends) and
// waits until it listens on port.
func startServer(t *testing.T, port int, argv ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(argv[0], argv[1:]...)
	var errb lockedBuffer
	c.Stdout, c.Stderr = &errb, &errb
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	if !waitFor(20*time.Second, func() bool { return listening(port) }) {
		t.Fatalf("%s did not listen on 127.0.0.1:%d within 20s:\n%s", argv[0], port, errb.String())
	}
	return c
}

// startWatchArgs runs watch --json --mode ebpf with args in this process,
// returning once the probes are attached, with a function that waits for
// it (after cancelling it when stop is true) and returns stdout and stderr.
func startWatchArgs(t *testing.T, args ...string) (wait func(stop bool) (string, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(append([]string{"watch", "--json", "--mode", "ebpf", "--interval", "500ms"}, args...))
		root.SetOut(&out)
		root.SetErr(&errb)
		done <- root.ExecuteContext(ctx)
	}()
	var early error
	if !waitFor(30*time.Second, func() bool {
		select {
		case early = <-done:
			return true
		default:
		}
		return strings.Contains(errb.String(), "copyscope: watching")
	}) || early != nil {
		t.Fatalf("watch %v did not attach within 30s: %v\n%s", args, early, errb.String())
	}
	return func(stop bool) (string, string) {
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
		return out.String(), errb.String()
	}
}

// observed is one subject's summary record over a whole watched run.
type observed map[string]any

func (o observed) num(key string) float64 {
	v, _ := o[key].(float64)
	return v
}

func (o observed) class(key, class string) float64 {
	m, _ := o[key].(map[string]any)
	v, _ := m[class].(float64)
	return v
}

func (o observed) str(key string) string {
	s, _ := o[key].(string)
	return s
}

// watchedRun watches pid with watch (args added) and strace -f at once
// while work runs, then compares the syscall counts (leaving out skip)
// and returns the summary records by subject.
func watchedRun(t *testing.T, pid int, args []string, skip map[string]bool, work func()) map[string]observed {
	t.Helper()
	wait := startWatchArgs(t, append([]string{"--pid", strconv.Itoa(pid)}, args...)...)
	finish := straceAttach(t, pid)
	time.Sleep(300 * time.Millisecond) // strace attaches every thread
	work()
	time.Sleep(300 * time.Millisecond)
	st := finish(true)
	out, _ := wait(true)
	compareCounts(t, st, watchCounts(t, out), skip)
	tot := map[string]observed{}
	for s, r := range watchTotals(t, out) {
		tot[s] = observed(r)
	}
	return tot
}

// only returns the one subject of a run, failing if there are others.
func only(t *testing.T, tot map[string]observed) observed {
	t.Helper()
	if len(tot) != 1 {
		t.Fatalf("%d subjects in the summary, want 1: %v", len(tot), tot)
	}
	for _, o := range tot {
		return o
	}
	return nil
}

// near fails unless got is within frac (relative) of want.
func near(t *testing.T, what string, got, want, frac float64) {
	t.Helper()
	if d := got - want; d > frac*want || -d > frac*want {
		t.Errorf("%s = %.0f, want %.0f (within %.0f%%)", what, got, want, 100*frac)
	} else {
		t.Logf("%s = %.0f, workload %.0f", what, got, want)
	}
}

// ratio fails unless a directional figure is present and within tol of want.
func ratio(t *testing.T, o observed, key string, want, tol float64) {
	t.Helper()
	v, ok := o[key].(float64)
	switch {
	case !ok:
		t.Errorf("%s absent, want %.2f", key, want)
	case v < want-tol || v > want+tol:
		t.Errorf("%s = %.3f, want %.2f (+-%.2f)", key, v, want, tol)
	default:
		t.Logf("%s = %.3f", key, v)
	}
}

// verdict fails unless the record's verdict field contains want and none
// of the verdicts names what is absent ("mmap" for a program that maps no
// file it sends).
func verdict(t *testing.T, o observed, key, want string, absent ...string) {
	t.Helper()
	if v := o.str(key); !strings.Contains(v, want) {
		t.Errorf("%s %q, want it to say %q", key, v, want)
	}
	for _, a := range absent {
		if v := o.str("verdict"); strings.Contains(v, a) {
			t.Errorf("verdict %q names %q", v, a)
		}
	}
}

// idleLoops are syscalls whose counts depend on the exact window watched,
// not on the work: event loops' timeouts, futex meetings, timers.
var idleLoops = map[string]bool{"poll": true, "select": true, "pselect6": true, "ppoll": true,
	"epoll_wait": true, "epoll_pwait": true, "futex": true, "restart_syscall": true,
	"clock_nanosleep": true, "nanosleep": true, "rt_sigprocmask": true}

// TestWatchIperf3: iperf3 -c sending with write() (from a buffer it
// filled itself) and with -Z (sendfile), and the iperf3 server, a pure
// receiver, all in one run each: 64 MiB each time.
func TestWatchIperf3(t *testing.T) {
	needPrograms(t, map[string]string{"iperf3": "iperf3"})
	const n = 64 << 20
	for _, tc := range []struct {
		name      string
		flags     []string
		sent      float64
		sendStyle string
	}{
		{"write", nil, 1, "sends: 1.0 copies per sent byte (write from user memory)"},
		{"sendfile -Z", []string{"-Z"}, 0, "sends: 100% by reference (sendfile/splice)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			srv := startServer(t, port, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
			srvWait := startWatchArgs(t, "--pid", strconv.Itoa(srv.Process.Pid))
			srvTrace := straceAttach(t, srv.Process.Pid)
			report := filepath.Join(t.TempDir(), "iperf3.json")
			cli := stoppedChild(t, append([]string{"iperf3", "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-n", strconv.Itoa(n), "-l", "128K",
				"-J", "--logfile", report}, tc.flags...)...)
			cliWait := startWatchArgs(t, "--pid", strconv.Itoa(cli.Process.Pid))
			cliTrace := straceAttach(t, cli.Process.Pid)
			if err := cli.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			cliSt := cliTrace(false) // ends with its tracee
			cliOut, _ := cliWait(false)
			time.Sleep(300 * time.Millisecond) // the server's end of the test
			srvSt := srvTrace(true)
			srvOut, _ := srvWait(true)
			t.Log("client (sender):")
			compareCounts(t, cliSt, watchCounts(t, cliOut), idleLoops)
			t.Log("server (receiver):")
			compareCounts(t, srvSt, watchCounts(t, srvOut), idleLoops)

			c := only(t, totalsOf(t, cliOut))
			near(t, "client delivered_bytes", c.num("delivered_bytes"), n, 0.01)
			ratio(t, c, "copies_per_sent_byte", tc.sent, 0.02)
			verdict(t, c, "verdict_sends", tc.sendStyle, "mmap")
			// The server stops reading at the end of the test and drops
			// what is still queued: its own count says what it received.
			got := iperf3Received(t, report)
			s := only(t, totalsOf(t, srvOut))
			near(t, "server received_bytes", s.num("received_bytes"), got, 0.01)
			near(t, "server copied_to_user_by_class.socket", s.class("copied_to_user_by_class", "socket"), got, 0.01)
			ratio(t, s, "copies_per_received_byte", 1, 0.02)
			verdict(t, s, "verdict_receives", "receives: 1.0 copies per received byte (recv into user memory)", "idle", "mmap")
		})
	}
}

// iperf3Received reads the bytes the server reported received from the
// client's JSON report.
func iperf3Received(t *testing.T, path string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		End struct {
			SumReceived struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.End.SumReceived.Bytes == 0 {
		t.Fatalf("iperf3 report %s: %v\n%.300s", path, err, b)
	}
	return rep.End.SumReceived.Bytes
}

// totalsOf returns the summary records of watch --json output.
func totalsOf(t *testing.T, out string) map[string]observed {
	t.Helper()
	tot := map[string]observed{}
	for s, r := range watchTotals(t, out) {
		tot[s] = observed(r)
	}
	return tot
}

// TestWatchRsyncDaemonForks: an rsync daemon forks a child per
// connection; watching the daemon's pid counts the child from its first
// syscall (the counts equal strace -f's, which follows forks), and the
// child, which read()s the file and write()s it to the socket, is a
// 2-copies-per-sent-byte sender of the file's bytes.
func TestWatchRsyncDaemonForks(t *testing.T) {
	needPrograms(t, map[string]string{"rsync": "rsync"})
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7919 >> 8) // not all zeros: nothing to skip
	}
	if err := os.WriteFile(filepath.Join(src, "file"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "rsyncd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\nuid = root\ngid = root\n[m]\npath = %s\nread only = yes\n", src)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startServer(t, port, "rsync", "--daemon", "--no-detach", "--config="+conf, "--address=127.0.0.1", "--port="+strconv.Itoa(port))
	const conns = 2
	tot := watchedRun(t, d.Process.Pid, nil, idleLoops, func() {
		for i := range conns {
			dst := filepath.Join(dir, fmt.Sprintf("dst%d", i))
			out, err := exec.Command("rsync", "-a", "--whole-file", fmt.Sprintf("rsync://127.0.0.1:%d/m/file", port), dst).CombinedOutput()
			if err != nil {
				t.Fatalf("rsync client: %v\n%s", err, out)
			}
		}
	})
	children := 0
	for name, o := range tot {
		if strings.HasSuffix(name, "["+strconv.Itoa(d.Process.Pid)+"]") {
			if o.num("delivered_bytes") > 1<<20 {
				t.Errorf("the daemon itself delivered %.0f bytes: the transfers were not in its children", o.num("delivered_bytes"))
			}
			continue
		}
		children++
		t.Logf("child %s:", name)
		near(t, "child delivered_bytes", o.num("delivered_bytes"), size, 0.01)
		near(t, "child copied_to_user_by_class.file", o.class("copied_to_user_by_class", "file"), size, 0.01)
		ratio(t, o, "copies_per_sent_byte", 2, 0.03)
		verdict(t, o, "verdict_sends", "sends: 2.0 copies per sent byte (read into user memory, write from it)", "mmap")
	}
	if children != conns {
		t.Errorf("%d child processes in the summary, want %d (one per connection): %v", children, conns, tot)
	}
}

// TestWatchChildCgroup: watch --cgroup PARENT counts dd running in a
// cgroup two levels below it, from its first syscall.
func TestWatchChildCgroup(t *testing.T) {
	needPrograms(t, map[string]string{"dd": "coreutils"})
	root := probes.Cgroup2Mount()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(root, &sfs); err != nil || sfs.Type != 0x63677270 {
		t.Skipf("%s is not a cgroup2 mount (%v): cannot make child cgroups", root, err)
	}
	parent := filepath.Join(root, fmt.Sprintf("copyscope-watch-%d", os.Getpid()))
	child := filepath.Join(parent, "app", "worker")
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Skipf("cannot create cgroups: %v", err)
	}
	t.Cleanup(func() { os.Remove(child); os.Remove(filepath.Dir(child)); os.Remove(parent) })
	const size = 8 << 20
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	dd := stoppedChild(t, "dd", "if="+in, "of="+in+".out", "bs=64k", "status=none")
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), []byte(strconv.Itoa(dd.Process.Pid)), 0o644); err != nil {
		t.Fatalf("move dd into %s: %v", child, err)
	}
	wait := startWatchArgs(t, "--cgroup", parent)
	finish := straceAttach(t, dd.Process.Pid)
	if err := dd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	st := finish(false)
	time.Sleep(600 * time.Millisecond) // an interval after dd's exit
	out, stderr := wait(true)
	if !strings.Contains(stderr, "with its descendant cgroups") {
		t.Errorf("watch does not say descendant cgroups are included:\n%s", stderr)
	}
	compareCounts(t, st, watchCounts(t, out), nil)
	o := only(t, totalsOf(t, out))
	near(t, "copied_to_user_by_class.file", o.class("copied_to_user_by_class", "file"), size, 0.01)
	near(t, "copied_from_user_by_class.file", o.class("copied_from_user_by_class", "file"), size, 0.01)
	if v := o.str("verdict"); !strings.HasPrefix(v, "idle") {
		t.Errorf("dd moved nothing on sockets, verdict %q", v)
	}
}

// serveBytes listens on a free port and writes n bytes to every
// connection, then closes it: the origin behind a proxy.
func serveBytes(t *testing.T, n int) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	buf := make([]byte, 1<<20)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, io.LimitReader(c, 0))
				for left := n; left > 0; {
					k := min(left, len(buf))
					if _, err := c.Write(buf[:k]); err != nil {
						return
					}
					left -= k
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// download connects to port and reads until EOF, returning the bytes.
func download(t *testing.T, port int, request string) int64 {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if request != "" {
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWatchHaproxy: haproxy in TCP mode between a client and an origin
// that sends 32 MiB per connection, with splice (both legs by reference)
// and without (recv into a buffer, send from it).
func TestWatchHaproxy(t *testing.T) {
	needPrograms(t, map[string]string{"haproxy": "haproxy"})
	const n, conns = 32 << 20, 2
	for _, tc := range []struct {
		name             string
		option           string
		sent, recv       float64
		sendStyle, rcvSt string
	}{
		{"splice", "option splice-response\n  option splice-request", 0, 0,
			"sends: 100% by reference (sendfile/splice)", "receives: 100% by reference (splice)"},
		{"no splice", "no option splice-auto", 1, 1,
			"sends: 1.0 copies per sent byte (write from user memory)", "receives: 1.0 copies per received byte (recv into user memory)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			origin := serveBytes(t, n)
			port := freePort(t)
			cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
			conf := fmt.Sprintf(`global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  %s
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  server o 127.0.0.1:%d
`, tc.option, port, origin)
			if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			h := startServer(t, port, "haproxy", "-db", "-f", cfg)
			var got int64
			// haproxy reads the clock (CLOCK_THREAD_CPUTIME_ID, a real
			// syscall) at every wake-up of its event loop.
			skip := map[string]bool{"clock_gettime": true}
			for k := range idleLoops {
				skip[k] = true
			}
			tot := watchedRun(t, h.Process.Pid, nil, skip, func() {
				for range conns {
					got += download(t, port, "")
				}
			})
			if got != conns*n {
				t.Fatalf("the client got %d bytes through haproxy, want %d", got, conns*n)
			}
			o := only(t, tot)
			near(t, "delivered_bytes", o.num("delivered_bytes"), conns*n, 0.01)
			near(t, "received_bytes", o.num("received_bytes"), conns*n, 0.01)
			ratio(t, o, "copies_per_sent_byte", tc.sent, 0.02)
			ratio(t, o, "copies_per_received_byte", tc.recv, 0.02)
			verdict(t, o, "verdict_sends", tc.sendStyle, "mmap")
			verdict(t, o, "verdict_receives", tc.rcvSt)
		})
	}
}

// httpGet fetches path from a server on port over HTTP/1.0 and returns
// the response's length (headers included) and its body's.
func httpGet(t *testing.T, port int, path string) (total, body int) {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "\r\n\r\n")
	if i < 0 || !strings.HasPrefix(string(b), "HTTP/1.0 200") {
		t.Fatalf("GET %s: not a 200 response: %.200q", path, b)
	}
	return len(b), len(b) - i - 4
}

// TestWatchLighttpd: a static file server on large files (sent with
// sendfile: by reference) and on small ones. Whatever lighttpd chooses,
// every body byte either goes by reference or is read into user memory,
// and the bytes delivered are exactly what the client received.
func TestWatchLighttpd(t *testing.T) {
	needPrograms(t, map[string]string{"lighttpd": "lighttpd"})
	for _, tc := range []struct {
		name        string
		size, n     int
		sendStyle   string
		byReference bool
	}{
		{"large files", 8 << 20, 4, "sends: 100% by reference (sendfile/splice)", true},
		{"small files", 2 << 10, 200, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			docs := filepath.Join(dir, "docs")
			os.Mkdir(docs, 0o755)
			if err := os.WriteFile(filepath.Join(docs, "f"), make([]byte, tc.size), 0o644); err != nil {
				t.Fatal(err)
			}
			port := freePort(t)
			conf := filepath.Join(dir, "lighttpd.conf")
			os.WriteFile(conf, []byte(fmt.Sprintf("server.document-root = %q\nserver.bind = \"127.0.0.1\"\nserver.port = %d\nserver.errorlog = %q\n",
				docs, port, filepath.Join(dir, "error.log"))), 0o644)
			srv := startServer(t, port, "lighttpd", "-D", "-f", conf)
			// lighttpd's once-a-second housekeeping reads the uptime.
			skip := map[string]bool{"sysinfo": true}
			for k := range idleLoops {
				skip[k] = true
			}
			var got, bodies int
			tot := watchedRun(t, srv.Process.Pid, nil, skip, func() {
				for range tc.n {
					total, body := httpGet(t, port, "/f")
					got += total
					bodies += body
				}
			})
			if bodies != tc.n*tc.size {
				t.Fatalf("the client got %d body bytes, want %d", bodies, tc.n*tc.size)
			}
			o := only(t, tot)
			near(t, "delivered_bytes", o.num("delivered_bytes"), float64(got), 0.01)
			byRef := o.class("moved_in_kernel_by_class", "socket")
			read := o.class("copied_to_user_by_class", "file")
			near(t, "body bytes by reference or read into user memory", byRef+read, float64(bodies), 0.01)
			if tc.byReference {
				near(t, "moved_in_kernel_by_class.socket", byRef, float64(bodies), 0.01)
				ratio(t, o, "copies_per_sent_byte", 0, 0.02)
				verdict(t, o, "verdict_sends", tc.sendStyle, "mmap")
				return
			}
			// Small files: the copies are what the syscalls did with them.
			want := (read + o.class("copied_from_user_by_class", "socket")) / o.num("delivered_bytes")
			ratio(t, o, "copies_per_sent_byte", want, 0.001)
			t.Logf("small files: %.0f%% of body bytes read into user memory, verdict %q", 100*read/float64(bodies), o.str("verdict"))
			if v := o.str("verdict_sends"); strings.Contains(v, "mmap") || !strings.HasPrefix(v, "sends: ") {
				t.Errorf("verdict_sends %q", v)
			}
		})
	}
}

// redisCmd writes one RESP command.
func redisCmd(w io.Writer, args ...string) {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// TestWatchRedis: redis serves a 1 MiB value from its heap 32 times: one
// copy per sent byte (write from user memory), never "mmap"; the SET
// that stored it is received with one copy per byte.
func TestWatchRedis(t *testing.T) {
	needPrograms(t, map[string]string{"redis-server": "redis-server"})
	const size, gets = 1 << 20, 32
	port := freePort(t)
	srv := startServer(t, port, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	value := strings.Repeat("v", size)
	reply := fmt.Sprintf("$%d\r\n%s\r\n", size, value)
	tot := watchedRun(t, srv.Process.Pid, nil, idleLoops, func() {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		redisCmd(c, "SET", "k", value)
		ok := make([]byte, 5)
		if _, err := io.ReadFull(c, ok); err != nil || string(ok) != "+OK\r\n" {
			t.Fatalf("SET: %q %v", ok, err)
		}
		buf := make([]byte, len(reply))
		for range gets {
			redisCmd(c, "GET", "k")
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != reply {
				t.Fatalf("GET: %v", err)
			}
		}
	})
	o := only(t, tot)
	near(t, "delivered_bytes", o.num("delivered_bytes"), float64(5+gets*len(reply)), 0.01)
	near(t, "received_bytes (the SET and the GETs)", o.num("received_bytes"), float64(size+gets*len("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")), 0.01)
	ratio(t, o, "copies_per_sent_byte", 1, 0.02)
	ratio(t, o, "copies_per_received_byte", 1, 0.02)
	verdict(t, o, "verdict_sends", "sends: 1.0 copies per sent byte (write from user memory)", "mmap")
	verdict(t, o, "verdict_receives", "receives: 1.0 copies per received byte (recv into user memory)")
}

// kcatLoad runs kcat producers and consumers against addr at once: two
// producers one after the other, each sending the lines of input, while
// consumers read the topic from the start again and again until the
// producers are done.
func kcatLoad(t *testing.T, addr, topic, input string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "kcat", append([]string{"-b", addr, "-t", topic}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kcat %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := run("-P", "-l", input); err != nil { // the topic exists before consumers ask
		t.Fatal(err)
	}
	produced := make(chan error, 1)
	go func() {
		err := run("-P", "-l", input)
		if err == nil {
			err = run("-P", "-l", input)
		}
		produced <- err
	}()
	for i := 0; ; i++ {
		if err := run("-C", "-o", "beginning", "-e", "-q", "-f", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-produced:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		if i > 20 {
			t.Fatal("the producers did not finish within 20 consumer rounds")
		}
	}
}

// TestWatchBrokerKcat: copyscope broker with kcat producers and consumers
// at once. Produced bytes are received with two copies each (recv into
// user memory, pwrite into the segment: --produce-path write); fetched
// bytes are sent with none on the sendfile path and two (pread, write) on
// the read path.
func TestWatchBrokerKcat(t *testing.T) {
	needPrograms(t, map[string]string{"kcat": "kcat"})
	input := filepath.Join(t.TempDir(), "lines")
	line := strings.Repeat("x", 999) + "\n"
	if err := os.WriteFile(input, []byte(strings.Repeat(line, 8000)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path      string
		sent      float64
		sendStyle string
	}{
		{"sendfile", 0, "sends: 100% by reference (sendfile/splice)"},
		{"read", 2, "sends: 2.0 copies per sent byte (read into user memory, write from it)"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			port := freePort(t)
			b := startBrokerChild(t, true, "--data", t.TempDir(), "--produce-path", "write",
				"--listen", fmt.Sprintf("%s=127.0.0.1:%d", tc.path, port))
			wait := startWatchArgs(t, "--pid", strconv.Itoa(b.cmd.Process.Pid))
			kcatLoad(t, b.addr, "w", input)
			out, _ := wait(true)
			o := only(t, totalsOf(t, out))
			t.Logf("broker: delivered %.0f, received %.0f, verdict %q", o.num("delivered_bytes"), o.num("received_bytes"), o.str("verdict"))
			if o.num("received_bytes") < 3*8000*1000 {
				t.Errorf("received_bytes %.0f, want at least the 24 MB kcat produced", o.num("received_bytes"))
			}
			ratio(t, o, "copies_per_sent_byte", tc.sent, 0.02)
			ratio(t, o, "copies_per_received_byte", 2, 0.05)
			verdict(t, o, "verdict_sends", tc.sendStyle, "mmap")
			verdict(t, o, "verdict_receives", "receives: 2.0 copies per received byte (recv into user memory, write to a file or pipe)")
		})
	}
}

// TestWatchBrokerByPort: a broker with a read listener and a sendfile
// listener, consumed through both at once. --by port shows the two
// listeners side by side, 2.00 and 0.00 copies per sent byte, each with
// every byte kcat consumed through it, and a second watch with --port
// counts only the sendfile listener's traffic.
func TestWatchBrokerByPort(t *testing.T) {
	needPrograms(t, map[string]string{"kcat": "kcat"})
	input := filepath.Join(t.TempDir(), "lines")
	line := strings.Repeat("y", 999) + "\n"
	if err := os.WriteFile(input, []byte(strings.Repeat(line, 8000)), 0o644); err != nil {
		t.Fatal(err)
	}
	readPort, sfPort := freePort(t), freePort(t)
	b := startBrokerChild(t, true, "--data", t.TempDir(),
		"--listen", fmt.Sprintf("read=127.0.0.1:%d", readPort), "--listen", fmt.Sprintf("sendfile=127.0.0.1:%d", sfPort))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kcat := func(port int, args ...string) error {
		out, err := exec.CommandContext(ctx, "kcat", append([]string{"-b", fmt.Sprintf("127.0.0.1:%d", port), "-t", "p"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kcat %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := kcat(readPort, "-P", "-l", input); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(b.cmd.Process.Pid)
	byPort := startWatchArgs(t, "--pid", pid, "--by", "port")
	onlySF := startWatchArgs(t, "--pid", pid, "--port", strconv.Itoa(sfPort))
	const rounds = 3
	errs := make(chan error, 2)
	for _, port := range []int{readPort, sfPort} {
		go func() {
			var err error
			for i := 0; i < rounds && err == nil; i++ {
				err = kcat(port, "-C", "-o", "beginning", "-e", "-q", "-f", "")
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // the last connections' threads exit and are read
	out, _ := byPort(true)
	tot := totalsOf(t, out)
	for name, o := range tot {
		t.Logf("by port: %s delivered %.0f received %.0f moved %v", name, o.num("delivered_bytes"), o.num("received_bytes"), o["moved_in_kernel_by_class"])
	}
	for _, tc := range []struct {
		port int
		sent float64
	}{{readPort, 2}, {sfPort, 0}} {
		o, ok := tot[":"+strconv.Itoa(tc.port)]
		if !ok {
			t.Fatalf("no subject for port %d in %v", tc.port, tot)
		}
		near(t, fmt.Sprintf(":%d delivered_bytes", tc.port), o.num("delivered_bytes"), rounds*8000*1000, 0.02)
		ratio(t, o, "copies_per_sent_byte", tc.sent, 0.02)
	}
	out, stderr := onlySF(true)
	if !strings.Contains(stderr, fmt.Sprintf("on ports [%d] only", sfPort)) {
		t.Errorf("watch --port does not say what it counts:\n%s", stderr)
	}
	o := only(t, totalsOf(t, out))
	near(t, "--port delivered_bytes", o.num("delivered_bytes"), rounds*8000*1000, 0.02)
	ratio(t, o, "copies_per_sent_byte", 0, 0.02)
	verdict(t, o, "verdict_sends", "sends: 100% by reference (sendfile/splice)")
}
