// Package kafka serves a log.Store over the Kafka wire protocol, so that
// kcat, franz-go or the Java client can produce to and consume from the
// copyscope broker.
//
// Each connection runs on its own locked OS thread doing blocking reads and
// writes on the raw socket: the thread's syscalls are the transfer path's
// arithmetic plus a constant few per request, with no epoll or futex traffic
// per byte. Listeners accept on locked threads too (listen.go), and limits
// bound what clients can hold (limits.go). Fetch responses are framed by
// hand around the record bytes, which move from segment files to the
// socket through a transfer.Path and are never read by the broker.
//
// The group coordinator (groups.go and one file per API, named by its
// key: 11_join_group.go) keeps consumer groups and their committed
// offsets, which offsets_log.go makes durable in __consumer_offsets.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"golang.org/x/sys/unix"
)

// Listener is one address the broker accepts connections on, and the
// transfer path its Fetch responses use ("" means Config.DefaultFetchPath).
type Listener struct {
	Addr string
	Path string
	// TLS, when set, makes this a TLS listener (Kafka's SSL): every
	// connection runs the handshake and the tls transfer path (Path must
	// be "" or "tls").
	TLS *tls.Config
}

// ListenerAddr is a bound listener: its actual address (the port resolved
// when Addr asked for :0) and its transfer path.
type ListenerAddr struct {
	Addr string
	Path string
}

// Config configures a Server. Start from DefaultConfig: the zero value
// turns auto-creation of topics off.
type Config struct {
	// Listeners to bind; none means one on 127.0.0.1:9092.
	Listeners []Listener
	// DefaultFetchPath is the transfer path of listeners that name none.
	DefaultFetchPath string
	// Chunk is the bytes a transfer path moves per syscall (0: 64 KiB).
	Chunk int
	// MaxRequestBytes caps a request's size prefix (Kafka's
	// socket.request.max.bytes); a larger frame closes the connection.
	MaxRequestBytes int32
	// AutoCreateTopics creates unknown topics named in Metadata requests.
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of auto-created topics and
	// of CreateTopics requests that ask for -1.
	DefaultPartitions int32
	// Registry, if set, publishes every connection's data thread.
	Registry *transfer.Registry
	// Congestion, if set, is the TCP congestion control (TCP_CONGESTION,
	// e.g. "cubic") of every accepted connection; empty keeps the host's
	// net.ipv4.tcp_congestion_control. bench sets the same one on its raw
	// variant's socket: with bbr and no fq qdisc TCP paces internally, and
	// on loopback each Fetch response restarting from idle made it pace
	// the broker's read path ~2x more often than the raw loop.
	Congestion string
	// Logf, if set, receives one line per notable event.
	Logf func(format string, args ...any)

	// MaxConnections caps the connections open at once, and
	// MaxConnectionsPerIP those from one client address (0: the
	// defaults, -1: no cap). A connection beyond either is closed as
	// soon as it is accepted, with a log line; the others are served.
	MaxConnections      int
	MaxConnectionsPerIP int
	// IdleTimeout closes a connection that sent no request for that long
	// (Kafka's connections.max.idle.ms; 0: the default, -1: never).
	IdleTimeout time.Duration
	// RequestTimeout closes a connection whose request has not fully
	// arrived that long after its first byte (0: the default, -1: never).
	RequestTimeout time.Duration
	// MaxBufferedRequestBytes caps the bytes of requests larger than a
	// connection's 64 KiB base buffer being read at once, over all
	// connections (Kafka's queued.max.request.bytes; 0: the default, -1:
	// no cap). A request waits for its whole size to be free before its
	// body is read, and memory is allocated as its bytes arrive.
	MaxBufferedRequestBytes int64
}

// Defaults, as Kafka's.
const (
	// DefaultAddr is the listener used when none is configured.
	DefaultAddr = "127.0.0.1:9092"
	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes.
	DefaultMaxRequestBytes = 100 << 20
	// MaxPartitions bounds a topic's partition count so a request cannot
	// create thousands of directories.
	MaxPartitions = 10000
)

// DefaultConfig returns the configuration `copyscope broker` starts from.
func DefaultConfig() Config {
	return Config{
		Listeners:         []Listener{{Addr: DefaultAddr}},
		DefaultFetchPath:  "sendfile",
		Chunk:             transfer.DefaultChunk,
		MaxRequestBytes:   DefaultMaxRequestBytes,
		AutoCreateTopics:  true,
		DefaultPartitions: 1,

		MaxConnections:          DefaultMaxConnections,
		MaxConnectionsPerIP:     DefaultMaxConnectionsPerIP,
		IdleTimeout:             DefaultIdleTimeout,
		RequestTimeout:          DefaultRequestTimeout,
		MaxBufferedRequestBytes: DefaultMaxBufferedRequestBytes,
	}
}

// Server is a Kafka protocol server over one log.Store.
type Server struct {
	store *log.Store
	cfg   Config

	// nextPID hands out producer ids: it starts at the start time in
	// microseconds, so ids never repeat across restarts unless more than a
	// million are handed out per second of uptime.
	nextPID atomic.Int64

	groups      *coordinator
	unsupported seenAPIs

	mu      sync.Mutex
	started bool
	closed  bool
	lns     []*rawListener
	conns   map[*conn]struct{}
	closing chan struct{} // closed when Shutdown begins
	wg      sync.WaitGroup

	adm        admission
	budget     *byteBudget // nil: no cap on buffered request bytes
	rcvTimeout time.Duration
	limitLog   limitLog
	counts     limitCounters
}

// NewServer checks cfg and returns a server for store; Start binds it.
func NewServer(store *log.Store, cfg Config) (*Server, error) {
	if store == nil {
		return nil, errors.New("kafka server: nil store (open one with log.Open)")
	}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = []Listener{{Addr: DefaultAddr}}
	}
	if cfg.DefaultFetchPath == "" {
		cfg.DefaultFetchPath = "sendfile"
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = transfer.DefaultChunk
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxRequestBytes < 1024 {
		return nil, fmt.Errorf("kafka server: max request bytes %d is too small to hold a request (use at least 1024)", cfg.MaxRequestBytes)
	}
	if cfg.DefaultPartitions == 0 {
		cfg.DefaultPartitions = 1
	}
	if cfg.DefaultPartitions < 0 || cfg.DefaultPartitions > MaxPartitions {
		return nil, fmt.Errorf("kafka server: default partitions %d out of range (use 1..%d)", cfg.DefaultPartitions, MaxPartitions)
	}
	if err := normalizeLimits(&cfg); err != nil {
		return nil, fmt.Errorf("kafka server: %w", err)
	}
	if cfg.Congestion != "" {
		if err := checkCongestion(cfg.Congestion); err != nil {
			return nil, fmt.Errorf("kafka server: %w", err)
		}
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.TLS != nil {
			if l.Path != "" && l.Path != "tls" {
				return nil, fmt.Errorf("kafka server: listener %s: a TLS listener serves the tls path, not %q", l.Addr, l.Path)
			}
			l.Path = "tls"
			continue
		}
		if l.Path == "" {
			l.Path = cfg.DefaultFetchPath
		}
		p, err := transfer.New(l.Path, transfer.Options{Chunk: cfg.Chunk})
		if err != nil {
			return nil, fmt.Errorf("kafka server: listener %s: %w", l.Addr, err)
		}
		p.Close()
	}
	s := &Server{store: store, cfg: cfg, conns: map[*conn]struct{}{}, closing: make(chan struct{}),
		adm:        admission{perIP: map[string]int{}},
		rcvTimeout: socketTimeout(cfg.IdleTimeout, cfg.RequestTimeout),
		limitLog:   limitLog{last: map[string]time.Time{}, held: map[string]int{}}}
	if cfg.MaxBufferedRequestBytes > 0 {
		s.budget = newByteBudget(cfg.MaxBufferedRequestBytes)
	}
	s.nextPID.Store(time.Now().UnixMicro())
	s.groups = newCoordinator(store, s.logf, s.closing, &s.wg)
	return s, nil
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// Start binds every listener and starts accepting. If one address cannot
// be bound, none stays bound and the error names the address.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("kafka server: already started")
	}
	var lns []*rawListener
	for _, l := range s.cfg.Listeners {
		ln, err := listenRaw(l.Addr)
		if err != nil {
			for _, b := range lns {
				unix.Close(b.fd)
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("listen on %s: address already in use (stop the process using it, e.g. another broker, or pick another --listen address)", l.Addr)
			}
			return fmt.Errorf("listen on %s: %v (check the host:port in --listen)", l.Addr, err)
		}
		ln.path, ln.tls = l.Path, l.TLS
		lns = append(lns, ln)
	}
	s.lns = lns
	s.started = true
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.groups.load() }()
	go func() { defer s.wg.Done(); s.groups.sweep() }()
	for _, b := range lns {
		s.wg.Add(1)
		go s.acceptLoop(b)
	}
	return nil
}

// Addrs returns the bound listeners, in the order configured.
func (s *Server) Addrs() []ListenerAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ListenerAddr, 0, len(s.lns))
	for _, b := range s.lns {
		out = append(out, ListenerAddr{Addr: b.addr, Path: b.path})
	}
	return out
}

// checkCongestion tries TCP congestion control name on a throwaway socket,
// so a name the kernel lacks or does not allow fails at start, not at the
// first connection.
func checkCongestion(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("TCP congestion control %q: socket: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, name); err != nil {
		return fmt.Errorf("TCP congestion control %q: %w (see net.ipv4.tcp_available_congestion_control and tcp_allowed_congestion_control)", name, err)
	}
	return nil
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.adm.leave(c.ip)
	s.wg.Done()
}

// Shutdown stops accepting, lets in-flight requests finish (long-polling
// fetches return at once), then closes every connection. If ctx ends
// first, connections are cut (reads and writes fail) and ctx's error is
// returned. The caller closes the store afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	for _, b := range s.lns {
		b.wake()
	}
	for c := range s.conns {
		c.shutdown(unix.SHUT_RD)
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.shutdown(unix.SHUT_RDWR)
	}
	s.mu.Unlock()
	<-done
	return fmt.Errorf("kafka server shutdown: %w (connections were cut mid-request)", ctx.Err())
}
