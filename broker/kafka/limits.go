package kafka

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Limits a 2-core machine can afford. Every connection holds one locked OS
// thread (a few tens of KiB of stack and kernel state) and a request buffer
// that starts at 64 KiB; the caps keep a flood of clients from reaching Go's
// 10,000-thread limit or the open-file limit, and leave room for everyone
// else when one address opens too many.
const (
	// DefaultMaxConnections caps the connections open at once.
	DefaultMaxConnections = 1000
	// DefaultMaxConnectionsPerIP caps one client address's connections.
	DefaultMaxConnectionsPerIP = 200
	// DefaultIdleTimeout closes a connection that sent no request for
	// this long (Kafka's connections.max.idle.ms).
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultRequestTimeout is how long a request may take to arrive
	// once its first byte has (Kafka has none; a client trickling one
	// byte a second would otherwise hold its thread for ever).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxBufferedRequestBytes caps the bytes of large requests
	// being read at once, over all connections (Kafka's
	// queued.max.request.bytes).
	DefaultMaxBufferedRequestBytes = 256 << 20
)

// Errors a connection is closed with when it hits a limit.
var (
	errIdle           = errors.New("idle")
	errRequestTimeout = errors.New("request read deadline exceeded")
)

// admission counts open connections, in total and per client address.
type admission struct {
	mu    sync.Mutex
	total int
	perIP map[string]int
}

// admit takes a slot for ip, or says which limit refuses it.
func (a *admission) admit(ip string, maxTotal, maxPerIP int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if maxTotal > 0 && a.total >= maxTotal {
		return fmt.Errorf("%d connections open, the limit (--max-connections %d)", a.total, maxTotal)
	}
	if maxPerIP > 0 && a.perIP[ip] >= maxPerIP {
		return fmt.Errorf("%d connections open from %s, the limit per address (--max-connections-per-ip %d)", a.perIP[ip], ip, maxPerIP)
	}
	a.total++
	a.perIP[ip]++
	return nil
}

func (a *admission) leave(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.perIP[ip]--; a.perIP[ip] <= 0 {
		delete(a.perIP, ip)
	}
}

// peerIP is the address part of a "host:port" peer.
func peerIP(peer string) string {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		return peer
	}
	return host
}

// byteBudget is a pool of request-buffer bytes (queued.max.request.bytes).
// A connection reserves a large request's whole size before reading its
// body, so no two connections each hold part of the pool waiting for the
// rest; while it waits it reads nothing and TCP flow control holds the
// client back.
type byteBudget struct {
	mu      sync.Mutex
	avail   int64
	changed chan struct{} // closed and replaced when bytes come back
	waiting atomic.Int32  // connections waiting for bytes
}

// contended reports whether some connection waits for bytes (a nil
// budget never is).
func (b *byteBudget) contended() bool { return b != nil && b.waiting.Load() > 0 }

func newByteBudget(n int64) *byteBudget {
	return &byteBudget{avail: n, changed: make(chan struct{})}
}

// acquire reserves n bytes, waiting until deadline or stop.
func (b *byteBudget) acquire(n int64, deadline time.Time, stop <-chan struct{}) error {
	for {
		b.mu.Lock()
		if b.avail >= n {
			b.avail -= n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		if err := b.wait(ch, deadline, stop); err != nil {
			return err
		}
	}
}

// wait blocks until ch closes (bytes came back), deadline or stop.
func (b *byteBudget) wait(ch <-chan struct{}, deadline time.Time, stop <-chan struct{}) error {
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return errRequestTimeout
	case <-stop:
		return errors.New("broker shutting down")
	}
}

func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.avail += n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// limitLog writes at most one line per second for each limit, with the
// count of occurrences it held back, so a flood cannot flood the log.
type limitLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func (l *limitLog) logf(logf func(string, ...any), kind, format string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.last[kind]) < time.Second {
		l.held[kind]++
		l.mu.Unlock()
		return
	}
	held := l.held[kind]
	l.last[kind], l.held[kind] = now, 0
	l.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if held > 0 {
		msg += fmt.Sprintf(" (and %d more like it in the last second)", held)
	}
	logf("%s", msg)
}

// socketTimeout is the SO_RCVTIMEO of every connection: the blocking read
// wakes this often while a client is silent, so idle and request
// deadlines are checked without any extra syscall on busy connections.
// It is a quarter of the shorter deadline: a silent client is cut at most
// 25% after its deadline.
func socketTimeout(idle, request time.Duration) time.Duration {
	d := min(positiveOr(idle), positiveOr(request))
	if d == time.Duration(1<<63-1) {
		return 0
	}
	return max(d/4, 10*time.Millisecond)
}

func positiveOr(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Duration(1<<63 - 1)
	}
	return d
}

// setRecvTimeout sets SO_RCVTIMEO on fd (0: block for ever).
func setRecvTimeout(fd int, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

// normalizeLimits fills in defaults (0) and turns "no cap" (-1) into the
// internal zero, checking that a request of MaxRequestBytes can be read.
func normalizeLimits(cfg *Config) error {
	def := DefaultConfig()
	pick := func(v *int, d int, name string) error {
		switch {
		case *v == 0:
			*v = d
		case *v == -1:
			*v = 0
		case *v < 0:
			return fmt.Errorf("%s %d: use a positive count, or -1 for no cap", name, *v)
		}
		return nil
	}
	if err := pick(&cfg.MaxConnections, def.MaxConnections, "max connections"); err != nil {
		return err
	}
	if err := pick(&cfg.MaxConnectionsPerIP, def.MaxConnectionsPerIP, "max connections per IP"); err != nil {
		return err
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = def.IdleTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = def.RequestTimeout
	}
	switch b := cfg.MaxBufferedRequestBytes; {
	case b == 0:
		cfg.MaxBufferedRequestBytes = max(def.MaxBufferedRequestBytes, int64(cfg.MaxRequestBytes)+4)
	case b == -1:
	case b < int64(cfg.MaxRequestBytes)+4:
		return fmt.Errorf("max buffered request bytes %d is below one request of max request bytes %d (raise it, or lower --max-request-bytes)", b, cfg.MaxRequestBytes)
	}
	return nil
}

// LimitStats counts what the limits did since the server started.
type LimitStats struct {
	Open            int    // connections open now
	Refused         uint64 // connections closed at accept by a connection limit
	IdleClosed      uint64 // connections closed by the idle timeout
	RequestTimeouts uint64 // connections cut at the request deadline (slow, stalled, or waiting for buffer memory)
	BufferWaits     uint64 // requests that had to wait for the buffered-bytes cap
}

// limitCounters are LimitStats' counters, updated by the connections.
type limitCounters struct {
	refused, idle, timeouts, waits atomic.Uint64
}

// LimitStats returns what the limits did so far.
func (s *Server) LimitStats() LimitStats {
	s.adm.mu.Lock()
	open := s.adm.total
	s.adm.mu.Unlock()
	return LimitStats{Open: open, Refused: s.counts.refused.Load(), IdleClosed: s.counts.idle.Load(),
		RequestTimeouts: s.counts.timeouts.Load(), BufferWaits: s.counts.waits.Load()}
}
