package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/kfetch"
	"github.com/copyscope/copyscope/metrics"
	"golang.org/x/sys/unix"
)

// recvBufSize is the consumers' read buffer (the raw receiver's and the
// broker variant's Fetch client's): 1 MiB.
const recvBufSize = kfetch.DefaultBufSize

// sinkListener is a blocking TCP listener on 127.0.0.1 for the raw
// variant's receiver.
type sinkListener struct {
	fd   int
	addr string
}

func listenSink() (*sinkListener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("raw receiver socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind raw receiver on 127.0.0.1: %w", err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen raw receiver: %w", err)
	}
	return &sinkListener{fd: fd, addr: localAddr(fd)}, nil
}

// Close wakes a receiver blocked in accept (shutdown does, close alone
// does not) and closes the listener.
func (l *sinkListener) Close() error {
	_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
	return unix.Close(l.fd)
}

// threadRun is one thread's share of a run: its counters over the run.
type threadRun struct {
	tid   int
	delta metrics.Counters
	err   error
	// workers is the CPU of its io_uring workers over the run, folded
	// into delta (nil: none ran).
	workers *uint64
}

// sinkResult is what the receiver saw.
type sinkResult struct {
	threadRun
	bytes int64
	reads uint64
	end   time.Time
}

// sink accepts one connection and reads it into a 1 MiB buffer until EOF
// on a locked (and optionally pinned) thread, as a bare C receiver would. The
// thread exits with the goroutine so its pinning never leaks.
func (l *sinkListener) sink(tc ThreadCounters, cpu, fifo, rcvlowat int, cliTLS *tls.Config, out chan<- sinkResult) {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		var res sinkResult
		res.tid = unix.Gettid()
		defer func() { out <- res }()
		if res.err = placeThread(0, cpu, fifo); res.err != nil {
			return
		}
		fd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
		if err != nil {
			res.err = fmt.Errorf("raw receiver accept: %w", err)
			return
		}
		defer unix.Close(fd)
		if rcvlowat > 0 {
			if res.err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, rcvlowat); res.err != nil {
				return
			}
		}
		_ = tc.Watch(res.tid)
		defer tc.Unwatch(res.tid)
		before, err := tc.Read(res.tid)
		if err != nil {
			res.err = err
			return
		}
		buf := make([]byte, recvBufSize)
		read := func(b []byte) (int, error) { return unix.Read(fd, b) }
		if cliTLS != nil { // tls: decrypt, as a TLS consumer must
			tc := tls.Client(transfer.FDConn(fd), cliTLS)
			read = func(b []byte) (int, error) {
				n, err := tc.Read(b)
				if errors.Is(err, io.EOF) {
					return n, nil
				}
				return n, err
			}
		}
		for {
			res.reads++
			n, err := read(buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				res.err = fmt.Errorf("raw receiver read: %w", err)
				return
			}
			if n == 0 {
				break
			}
			res.bytes += int64(n)
		}
		res.end = time.Now()
		after, err := tc.Read(res.tid)
		if err != nil {
			res.err = err
			return
		}
		res.delta = after.Sub(before)
	}()
}

// rawResult is one raw run: the path's bare syscall loop.
type rawResult struct {
	sender  threadRun
	sink    sinkResult
	ledger  transfer.Ledger
	start   time.Time
	seconds float64
}

// rawSend is the handshake between runRaw and its sending thread: the
// thread's id (0 when it could not start), its result, and the moments
// to start sending and to close the socket.
type rawSend struct {
	tid           chan int
	sent          chan rawResult
	start, finish chan struct{}
}

// run is the sending thread: it connects (over TLS when srvTLS is set),
// waits for start, sends every
// part with one Path.Send and, once finish says the counters are read,
// closes the socket (EOF for the receiver).
func (rs rawSend) run(path string, opts transfer.Options, parts []transfer.Part, addr string, sendCPU, fifo int, cc string, srvTLS *tls.Config) {
	runtime.LockOSThread() // never unlocked: the thread dies with us
	var res rawResult
	res.sender.tid = unix.Gettid()
	fail := func(err error) {
		res.sender.err = err
		rs.tid <- 0
		rs.sent <- res
	}
	if err := placeThread(0, sendCPU, fifo); err != nil {
		fail(err)
		return
	}
	sock, err := dialBlocking(addr, 0)
	if err != nil {
		fail(err)
		return
	}
	if err := setCongestion(sock, cc); err != nil {
		unix.Close(sock)
		fail(err)
		return
	}
	var p transfer.Path
	if srvTLS != nil {
		p, err = transfer.NewTLS(sock, srvTLS, opts)
	} else {
		p, err = transfer.New(path, opts)
	}
	if err != nil {
		unix.Close(sock)
		fail(err)
		return
	}
	rs.tid <- res.sender.tid
	<-rs.start
	res.start = time.Now()
	_, serr := p.Send(sock, parts)
	cerr := p.Close() // zerocopy: waits for completions while the socket lives
	res.ledger = p.Ledger()
	switch {
	case serr != nil:
		res.sender.err = fmt.Errorf("raw %s send: %w", path, serr)
	case cerr != nil:
		res.sender.err = fmt.Errorf("raw %s close: %w", path, cerr)
	}
	rs.sent <- res
	<-rs.finish
	unix.Close(sock)
}

// count reads the sending thread's counters just before it starts and
// just after it has sent, and returns its result with their difference.
func (rs rawSend) count(tc ThreadCounters) rawResult {
	tid := <-rs.tid
	if tid == 0 {
		return <-rs.sent
	}
	_ = tc.Watch(tid)
	defer tc.Unwatch(tid)
	before, wBefore, err := readData(tc, tid)
	close(rs.start)
	res := <-rs.sent
	after, wAfter, aerr := readData(tc, tid)
	close(rs.finish)
	if err == nil {
		err = aerr
	}
	if res.sender.err == nil {
		res.sender.err = err
	}
	res.sender.delta = after.Sub(before)
	res.sender.workers = workerDelta(wBefore, wAfter)
	return res
}

// runRaw sends every span with one Path.Send on a locked thread (pinned to
// sendCPU) to a loopback receiver (pinned to recvCPU), both SCHED_FIFO fifo
// if fifo > 0: the path without the Kafka protocol. cc, if set, is the
// sending socket's TCP congestion control (as the broker's, Config.Congestion).
// For tls, srvTLS and cliTLS are the sender's and the receiver's TLS
// configurations: the receiver decrypts what it reads.
func runRaw(path string, opts transfer.Options, spans []transfer.Span, tc ThreadCounters, sendCPU, recvCPU, fifo, rcvlowat int, cc string, srvTLS, cliTLS *tls.Config) (rawResult, error) {
	var want int64
	parts := make([]transfer.Part, 0, len(spans))
	for _, s := range spans {
		want += s.Len
		parts = append(parts, transfer.Part{Span: s})
	}
	ln, err := listenSink()
	if err != nil {
		return rawResult{}, err
	}
	defer ln.Close()
	sinkc := make(chan sinkResult, 1)
	ln.sink(tc, recvCPU, fifo, rcvlowat, cliTLS, sinkc)

	// The sender's counters are read from this goroutine's thread, not
	// its own: reading them (bpf map lookups, /proc files) must not count
	// as the data thread's syscalls.
	rs := rawSend{tid: make(chan int, 1), sent: make(chan rawResult, 1), start: make(chan struct{}), finish: make(chan struct{})}
	go rs.run(path, opts, parts, ln.addr, sendCPU, fifo, cc, srvTLS)
	res := rs.count(tc)
	if res.sender.err != nil {
		_ = unix.Shutdown(ln.fd, unix.SHUT_RDWR) // the receiver may still wait in accept
	}
	select {
	case res.sink = <-sinkc:
	case <-time.After(5 * time.Minute):
		return res, fmt.Errorf("raw %s: receiver did not finish within 5 minutes", path)
	}
	if res.sender.err != nil {
		return res, res.sender.err
	}
	if res.sink.err != nil {
		return res, res.sink.err
	}
	if res.sink.bytes != want {
		return res, fmt.Errorf("raw %s: receiver got %d bytes, sent %d", path, res.sink.bytes, want)
	}
	res.seconds = res.sink.end.Sub(res.start).Seconds()
	return res, nil
}
