package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// logBuffer collects the broker's log lines for a test to check.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuffer) count(substr ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range substr {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// procSelf is what the kernel says about this process: threads, resident
// memory and open descriptors.
type procSelf struct {
	threads, fds int
	rssKiB       int64
}

func readProcSelf(t testing.TB) procSelf {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var p procSelf
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "Threads":
			p.threads, _ = strconv.Atoi(fields[0])
		case "VmRSS":
			p.rssKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	p.fds = len(ents)
	return p
}

// loadAvg is the machine's 1-minute load average.
func loadAvg(t testing.TB) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}

// probeLatency opens a fresh connection from 127.0.0.1 and times
// ApiVersions and Metadata on it, as a new client's first exchange.
func probeLatency(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("probe"))
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(12)
	for _, req := range []kmsg.Request{kmsg.NewPtrApiVersionsRequest(), md} {
		if _, err := c.Write(f.AppendRequest(nil, req, 1)); err != nil {
			return 0, err
		}
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return 0, fmt.Errorf("%s: %w", kmsg.NameForKey(req.Key()), err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// floodResult is what a connection flood saw.
type floodResult struct {
	open, refused int
	timedOut      int           // of refused: never answered (floodConnectTimeout)
	took          time.Duration // until every attempt was open or refused
	peak          procSelf
	maxProbe      time.Duration
	probes        int
	maxKcat       time.Duration // kcat -L, process start included
	kcats         int
}

// kcatProbes runs a fresh `kcat -L` every 100 ms until stop (none if
// kcat is not installed) and reports the slowest.
func kcatProbes(t *testing.T, addr string, stop <-chan struct{}) floodResult {
	var r floodResult
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		return r
	}
	for {
		select {
		case <-stop:
			return r
		case <-time.After(100 * time.Millisecond):
		}
		start := time.Now()
		if out, err := exec.Command(kcat, "-b", addr, "-L", "-m", "5").CombinedOutput(); err != nil {
			t.Errorf("kcat -L during the flood: %v\n%s", err, out)
		}
		r.maxKcat = max(r.maxKcat, time.Since(start))
		r.kcats++
	}
}

// floodChild, in a child process (the test binary run again), opens n
// connections from 127.0.0.2 to addr at once, reporting its progress, then
// reports every 50 ms how many are open and how many the broker refused
// (closed, reset, or never answered within floodConnectTimeout: of those,
// timedout); when stdin closes it closes them all. The clients live in other processes so that this
// process's /proc counts are the broker's alone, and so that 20,000
// sockets fit under each process's RLIMIT_NOFILE.
func floodChild(addr string, n int) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var last time.Time
	fds, dc := floodDial(&unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, n, func(c dialCounts) {
		if time.Since(last) > 200*time.Millisecond {
			fmt.Printf("dialing connected=%d failed=%d timedout=%d\n", c.connected, c.failed, c.timedOut)
			last = time.Now()
		}
	})
	// A connection whose handshake the kernel completed while the accept
	// queue was full may exist on this side only; one byte makes the
	// broker's kernel answer it with a reset, so it counts as refused.
	for _, fd := range fds {
		unix.Write(fd, []byte{0})
	}
	quit := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(quit) }()
	open := map[int]bool{}
	for _, fd := range fds {
		open[fd] = true
	}
	refused := dc.failed + dc.timedOut
	var one [1]byte
	for {
		for fd := range open {
			m, err := unix.Read(fd, one[:])
			if m == 0 && err == nil || err != nil && err != unix.EAGAIN {
				unix.Close(fd)
				delete(open, fd)
				refused++
			}
		}
		fmt.Printf("open=%d refused=%d timedout=%d\n", len(open), refused, dc.timedOut)
		select {
		case <-quit:
			for fd := range open {
				unix.Close(fd)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// floodConnectTimeout bounds each handshake: a SYN the broker's kernel
// dropped (its accept queue full) is retried after 1, 2, 4... seconds, and
// a connection still not made after this is counted as refused (timed
// out), so a flood always ends.
const floodConnectTimeout = 5 * time.Second

// dialCounts is what floodDial has seen so far.
type dialCounts struct{ connected, failed, timedOut int }

// floodDial opens n non-blocking connections from 127.0.0.2 to sa, at
// most 1000 handshakes in flight, with raw syscalls in one goroutine (so
// the flood costs the same with -race), calling progress after each poll,
// and returns the connected sockets and the counts.
func floodDial(sa *unix.SockaddrInet4, n int, progress func(dialCounts)) ([]int, dialCounts) {
	var done []int
	var c dialCounts
	pending := map[int]time.Time{} // fd -> when its connect began
	for started := 0; started < n || len(pending) > 0; {
		for ; started < n && len(pending) < 1000; started++ {
			if fd, err := floodConnect(sa); err != nil {
				c.failed++
			} else {
				pending[fd] = time.Now()
			}
		}
		pfds := make([]unix.PollFd, 0, len(pending))
		for fd := range pending {
			pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT})
		}
		if _, err := unix.Poll(pfds, 100); err != nil && err != unix.EINTR {
			break
		}
		for _, p := range pfds {
			fd := int(p.Fd)
			if p.Revents == 0 {
				if time.Since(pending[fd]) > floodConnectTimeout {
					delete(pending, fd)
					unix.Close(fd)
					c.timedOut++
				}
				continue
			}
			delete(pending, fd)
			if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
				unix.Close(fd)
				c.failed++
				continue
			}
			done = append(done, fd)
		}
		c.connected = len(done)
		progress(c)
	}
	return done, c
}

// floodConnect starts one non-blocking connect from 127.0.0.2.
func floodConnect(sa *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// The port is chosen at connect (IP_BIND_ADDRESS_NO_PORT): bind with
	// port 0 searches the port range for one no other socket holds, which
	// with 20,000 sockets held made the kernel spend ~20 s of system time.
	err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}})
	}
	if err == nil {
		if err = unix.Connect(fd, sa); err == unix.EINPROGRESS {
			err = nil
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// flood opens n connections at once from child processes and holds them
// until the broker has accepted or refused every one, probing a fresh
// client from 127.0.0.1 every 20 ms meanwhile, then closes them all.
func flood(t *testing.T, addr string, n, limit int) floodResult {
	t.Helper()
	const perChild = 10000
	type count struct{ open, refused, timedOut int }
	var mu sync.Mutex
	counts := map[int]count{}
	dialing := map[int]string{} // each child's last progress line
	var stdins []io.Closer
	var cmds []*exec.Cmd
	for i := 0; i*perChild < n; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConnectionFlood$")
		cmd.Env = append(os.Environ(), "COPYSCOPE_FLOOD_ADDR="+addr, "COPYSCOPE_FLOOD_N="+strconv.Itoa(min(perChild, n-i*perChild)))
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A remote attacker does not run on the broker's CPUs; here the
		// clients share two cores with it, so they run at nice 10 and
		// the flood measures the broker, not the scheduler.
		if err := unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, 10); err != nil {
			t.Logf("renice flood child: %v", err)
		}
		stdins, cmds = append(stdins, in), append(cmds, cmd)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var c count
				line := sc.Text()
				mu.Lock()
				if _, err := fmt.Sscanf(line, "open=%d refused=%d timedout=%d", &c.open, &c.refused, &c.timedOut); err == nil {
					counts[i] = c
				} else if strings.HasPrefix(line, "dialing") {
					dialing[i] = line
				}
				mu.Unlock()
			}
		}()
	}
	total := func() (c count) {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range counts {
			c.open, c.refused, c.timedOut = c.open+v.open, c.refused+v.refused, c.timedOut+v.timedOut
		}
		return c
	}
	began := time.Now()
	stop := make(chan struct{})
	probed := make(chan floodResult)
	go func() {
		var r floodResult
		for {
			select {
			case <-stop:
				probed <- r
				return
			case <-time.After(20 * time.Millisecond):
			}
			lat, err := probeLatency(addr)
			if err != nil {
				lat = time.Hour
				t.Errorf("fresh client during the flood: %v", err)
			}
			r.maxProbe = max(r.maxProbe, lat)
			r.probes++
		}
	}()
	kcatDone := make(chan floodResult)
	go func() { kcatDone <- kcatProbes(t, addr, stop) }()
	var r floodResult
	settled := false
	for deadline := time.Now().Add(60 * time.Second); !settled && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p := readProcSelf(t)
		r.peak = procSelf{threads: max(p.threads, r.peak.threads), fds: max(p.fds, r.peak.fds), rssKiB: max(p.rssKiB, r.peak.rssKiB)}
		c := total()
		settled = c.open+c.refused == n && c.open <= limit
	}
	r.took = time.Since(began)
	if !settled {
		mu.Lock()
		t.Errorf("the flood had not settled after %v; the children's last progress: %v", r.took.Round(time.Millisecond), dialing)
		mu.Unlock()
	}
	time.Sleep(200 * time.Millisecond) // keep probing at the peak
	close(stop)
	pr, kr := <-probed, <-kcatDone
	c := total()
	r.open, r.refused, r.timedOut, r.maxProbe, r.probes = c.open, c.refused, c.timedOut, pr.maxProbe, pr.probes
	r.maxKcat, r.kcats = kr.maxKcat, kr.kcats
	for i, in := range stdins {
		in.Close()
		if err := cmds[i].Wait(); err != nil {
			t.Errorf("flood child %d: %v", i, err)
		}
	}
	return r
}

// TestConnectionFlood: connections opened at once from one address beyond
// the per-address limit are refused with a log line, the rest stay open,
// a fresh client from another address is served within 100 ms
// throughout (500 ms under the race detector), and threads return to the
// idle count after the flood closes. Threads, RSS and fds are the broker's, from /proc/self; the
// clients are child processes.
func TestConnectionFlood(t *testing.T) {
	if addr := os.Getenv("COPYSCOPE_FLOOD_ADDR"); addr != "" {
		n, _ := strconv.Atoi(os.Getenv("COPYSCOPE_FLOOD_N"))
		floodChild(addr, n)
		return
	}
	sizes := []int{2000, 20000}
	if testing.Short() {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var logs logBuffer
			b := startBroker(t, t.TempDir(), func(c *Config) { c.Logf = logs.logf })
			if _, err := probeLatency(b.addr); err != nil { // warm up
				t.Fatal(err)
			}
			idle, idleLoad := readProcSelf(t), loadAvg(t)
			r := flood(t, b.addr, n, DefaultMaxConnectionsPerIP)
			t.Logf("%d connection attempts in %v: %d open, %d refused (%d never answered); broker peak threads %d (idle %d), RSS %d MiB (idle %d), fds %d (idle %d); fresh client max %v over %d probes, kcat -L max %v over %d",
				n, r.took.Round(time.Millisecond), r.open, r.refused, r.timedOut, r.peak.threads, idle.threads, r.peak.rssKiB>>10, idle.rssKiB>>10, r.peak.fds, idle.fds, r.maxProbe.Round(time.Microsecond), r.probes, r.maxKcat.Round(time.Millisecond), r.kcats)
			if r.open != DefaultMaxConnectionsPerIP || r.refused != n-DefaultMaxConnectionsPerIP {
				t.Errorf("%d open and %d refused, want %d open (the per-address limit) and the rest refused", r.open, r.refused, DefaultMaxConnectionsPerIP)
			}
			if slow, bound := max(r.maxProbe, r.maxKcat), 100*time.Millisecond*raceSlowdown; slow > bound {
				// Other work on the machine delays the broker's accept
				// thread as much as the flood does: the bound holds only
				// on a machine not already overloaded (/proc/loadavg).
				if load := max(loadAvg(t), idleLoad); load > float64(runtime.NumCPU()) {
					t.Logf("a fresh client waited up to %v during the flood; not checked against %v: load average %.1f on %d CPUs", slow, bound, load, runtime.NumCPU())
				} else {
					t.Errorf("a fresh client (ApiVersions+Metadata, or kcat -L) waited up to %v during the flood, want under %v (100 ms, x%d under the race detector; load average %.1f)", slow, bound, raceSlowdown, load)
				}
			}
			if logs.count("refused connection from 127.0.0.2", "--max-connections-per-ip 200") == 0 {
				t.Errorf("no log line says why connections were refused: %q", logs.lines[:min(len(logs.lines), 5)])
			}
			// One line a second at most, however long the flood lasts.
			if l, most := logs.count("refused connection"), int(r.took.Seconds())+2; l > most {
				t.Errorf("%d log lines for refused connections in a %v flood: the log is flooded too", l, r.took.Round(time.Millisecond))
			}
			if r.peak.threads > idle.threads+DefaultMaxConnectionsPerIP+32 || r.peak.fds > idle.fds+DefaultMaxConnectionsPerIP+1100 {
				t.Errorf("broker peak threads %d, fds %d: want at most idle (%d, %d) + one per open connection (%d) + slack", r.peak.threads, r.peak.fds, idle.threads, idle.fds, DefaultMaxConnectionsPerIP)
			}
			deadline := time.Now().Add(10 * time.Second)
			var now procSelf
			for now = readProcSelf(t); now.threads > idle.threads+8 && time.Now().Before(deadline); now = readProcSelf(t) {
				time.Sleep(20 * time.Millisecond)
			}
			// Go keeps a few idle threads it started for blocking
			// syscalls; every connection's locked thread must be gone.
			if now.threads > idle.threads+8 {
				t.Errorf("%d threads 10s after the flood closed, idle was %d", now.threads, idle.threads)
			}
			t.Logf("after the flood closed: threads %d, RSS %d MiB, fds %d", now.threads, now.rssKiB>>10, now.fds)
			if kcat, err := exec.LookPath("kcat"); err == nil {
				start := time.Now()
				if out, err := exec.Command(kcat, "-b", b.addr, "-L", "-m", "5").CombinedOutput(); err != nil {
					t.Errorf("kcat -L after the flood: %v\n%s", err, out)
				}
				t.Logf("kcat -L after the flood: %v", time.Since(start).Round(time.Millisecond))
			}
		})
	}
}

// TestTotalConnectionLimit: the total cap refuses connections from any
// address once reached, and frees a slot when a connection closes.
func TestTotalConnectionLimit(t *testing.T) {
	var logs logBuffer
	b := startBroker(t, t.TempDir(), func(c *Config) { c.MaxConnections = 3; c.Logf = logs.logf })
	var held []net.Conn
	for i := range 3 {
		c := dialRaw(t, b.addr)
		rawRequest(t, c, kmsg.NewPtrApiVersionsRequest())
		held = append(held, c)
		_ = i
	}
	extra := dialRaw(t, b.addr)
	expectClosed(t, extra, "fourth connection over --max-connections 3")
	if logs.count("refused connection", "--max-connections 3") != 1 {
		t.Errorf("want one log line naming --max-connections 3, got %q", logs.lines)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := probeLatency(b.addr); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no connection accepted after one of the three closed")
}

// TestSlowClients: a request trickling in at 1 byte/s, a stalled one and
// an idle connection are each cut near their deadline, with a log line,
// while a client that keeps sending requests stays connected past both.
func TestSlowClients(t *testing.T) {
	const reqTimeout, idleTimeout = 1500 * time.Millisecond, 2500 * time.Millisecond
	var logs logBuffer
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.RequestTimeout, c.IdleTimeout, c.Logf = reqTimeout, idleTimeout, logs.logf
	})
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("slow")).AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), 9)
	cases := []struct {
		name     string
		send     func(c net.Conn) // runs until the connection is cut
		min, max time.Duration
		log      string
	}{
		{"trickle 1 byte/s", func(c net.Conn) {
			for _, by := range frame {
				if _, err := c.Write([]byte{by}); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}, reqTimeout, reqTimeout + 1250*time.Millisecond, "request read deadline exceeded"},
		{"stalled after 3 bytes", func(c net.Conn) { c.Write(frame[:3]) }, reqTimeout, reqTimeout*5/4 + 500*time.Millisecond, "request read deadline exceeded"},
		{"idle", func(net.Conn) {}, idleTimeout, idleTimeout*5/4 + 500*time.Millisecond, "idle for"},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		c := dialRaw(t, b.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			go tc.send(c)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Read(make([]byte, 64))
			took := time.Since(start)
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%s: not cut after %v (%v)", tc.name, took, err)
				return
			}
			if took < tc.min || took > tc.max {
				t.Errorf("%s: cut after %v, want %v..%v", tc.name, took, tc.min, tc.max)
			}
			t.Logf("%s: cut after %v (%v)", tc.name, took.Round(time.Millisecond), err)
		}()
	}
	// A busy client: one request every 500 ms for longer than both
	// deadlines is never cut.
	busy := dialRaw(t, b.addr)
	for end := time.Now().Add(idleTimeout + time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		rawRequest(t, busy, kmsg.NewPtrApiVersionsRequest())
	}
	wg.Wait()
	if logs.count("request read deadline exceeded", "--request-timeout") == 0 || logs.count("idle for", "--idle-timeout") == 0 {
		t.Errorf("log lacks the deadline lines: %q", logs.lines)
	}
}

// TestBufferedRequestCap: 64 connections each claim a 100 MiB request
// and send it slowly. Only as many as the cap holds are read at once, the
// others wait and are cut at the request deadline, and the process's RSS
// (from /proc) stays below the cap plus the constant the README states:
// 64 KiB per connection plus 64 MiB for the runtime and the test.
func TestBufferedRequestCap(t *testing.T) {
	if testing.Short() {
		t.Skip("moves ~400 MiB over loopback; skipped with -short")
	}
	const (
		conns   = 64
		claim   = 100 << 20
		sent    = 96 << 20
		capB    = 2*(claim+4) + 1024
		slack   = conns*initialInBuf + 64<<20
		timeout = 3 * time.Second
	)
	var logs logBuffer
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.MaxRequestBytes, c.MaxBufferedRequestBytes, c.RequestTimeout, c.Logf = claim, capB, timeout, logs.logf
	})
	base := readProcSelf(t)
	chunk := make([]byte, 1<<20)
	var wg sync.WaitGroup
	var full atomic.Int64 // clients whose 96 MiB the broker read
	for range conns {
		c := dialRaw(t, b.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prefix [4]byte
			binary.BigEndian.PutUint32(prefix[:], claim)
			c.SetWriteDeadline(time.Now().Add(timeout + 2*time.Second))
			if _, err := c.Write(prefix[:]); err != nil {
				return
			}
			for off := 0; off < sent; off += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond) // slowly: ~200 MiB/s at most
			}
			full.Add(1)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var peak int64
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(10 * time.Millisecond):
		}
		peak = max(peak, readProcSelf(t).rssKiB<<10)
	}
	t.Logf("RSS %d MiB before, peak %d MiB; cap %d MiB + constant %d MiB; %d of %d clients had their %d MiB read", base.rssKiB>>10, peak>>20, capB>>20, slack>>20, full.Load(), conns, sent>>20)
	if peak > base.rssKiB<<10+capB+slack {
		t.Errorf("peak RSS %d MiB above the baseline %d MiB + cap %d MiB + %d MiB", peak>>20, base.rssKiB>>10, capB>>20, slack>>20)
	}
	if full.Load() < 2 {
		t.Errorf("only %d clients had their bytes read: the cap holds two requests", full.Load())
	}
	if logs.count("waits for buffer memory", "--max-buffered-request-bytes") == 0 {
		t.Errorf("no log line says requests wait for the buffer cap: %q", logs.lines[:min(5, len(logs.lines))])
	}
	if _, err := probeLatency(b.addr); err != nil {
		t.Fatalf("broker not serving after the flood of large requests: %v", err)
	}
	// The request buffers are unmapped once their connections end: RSS
	// goes back (it stayed at 1.55 GB after the clients closed, before).
	after := readProcSelf(t).rssKiB << 10
	for deadline := time.Now().Add(5 * time.Second); after > base.rssKiB<<10+slack && time.Now().Before(deadline); after = readProcSelf(t).rssKiB << 10 {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("RSS after the clients closed: %d MiB", after>>20)
	if after > base.rssKiB<<10+slack {
		t.Errorf("RSS %d MiB after the large requests ended, baseline %d MiB + %d MiB", after>>20, base.rssKiB>>10, slack>>20)
	}

}

// TestKeptMappingGivenBack: after a 1 MiB produce the connection keeps
// its request mapping (and its share of the budget) for the next one,
// and gives both back once it has been silent for a socket timeout.
func TestKeptMappingGivenBack(t *testing.T) {
	const capB = 8 << 20
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.MaxRequestBytes, c.MaxBufferedRequestBytes, c.RequestTimeout = 2<<20, capB, 400*time.Millisecond
	})
	if err := b.store.CreateTopic("kept", 1); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.addr)
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks, req.TimeoutMillis = 1, 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "kept", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: makeBatch(make([]byte, 1<<20))}}}}
	if p := rawRequest(t, c, req).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 {
		t.Fatalf("produce: error %d", p.ErrorCode)
	}
	avail := func() int64 {
		b.srv.budget.mu.Lock()
		defer b.srv.budget.mu.Unlock()
		return b.srv.budget.avail
	}
	if a := avail(); a > capB-(1<<20) {
		t.Fatalf("right after a 1 MiB request the budget has %d of %d bytes free: the mapping was not kept", a, capB)
	}
	deadline := time.Now().Add(2 * time.Second)
	for avail() != capB && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a := avail(); a != capB {
		t.Fatalf("%d of %d budget bytes free after the connection fell silent: the kept mapping was not given back", a, capB)
	}
	rawRequest(t, c, kmsg.NewPtrApiVersionsRequest()) // the connection still works
}
