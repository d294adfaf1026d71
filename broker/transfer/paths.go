package transfer

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// DefaultChunk is the number of bytes a path moves per syscall unless
// Options.Chunk says otherwise.
const DefaultChunk = 64 << 10

// MaxChunk bounds Options.Chunk so a typo cannot allocate gigabytes per
// connection.
const MaxChunk = 64 << 20

// Options configure a path.
type Options struct {
	// Chunk is the number of span bytes moved per syscall (per pread,
	// write, sendfile, splice or sendmsg). 0 means DefaultChunk.
	Chunk int
	// NoCork leaves the socket uncorked. By default a Send that needs
	// more than one data syscall sets TCP_CORK for its duration and clears
	// it at the end (nginx's tcp_nopush), two setsockopt calls per
	// response: TCP then sends full segments whatever the chunk size and
	// TCP_NODELAY, instead of pushing every chunk's tail on its own. On
	// loopback uncorked runs fell into a mode where the receiver woke for
	// every segment (~40% more reads), so the broker (TCP_NODELAY, a
	// response per fetch) ran at 0.7-0.8x the bare loop for sendfile and
	// splice; corked, both form the same segments and the ratio is
	// 0.93-0.97. Compare with a bare loop that does not cork using NoCork.
	NoCork bool
}

func (o Options) chunk() int {
	if o.Chunk <= 0 {
		return DefaultChunk
	}
	return o.Chunk
}

// Names returns the transfer paths in the order of docs/design.md.
func Names() []string {
	return []string{"read", "mmap", "sendfile", "splice", "zerocopy", "uring", "uring-splice", "uring-zc"}
}

// New returns a fresh path by name; each connection needs its own.
func New(name string, opts Options) (Path, error) {
	if opts.Chunk < 0 || opts.Chunk > MaxChunk {
		return nil, fmt.Errorf("transfer path %q: chunk %d bytes out of range (use 1..%d, or 0 for the default %d)", name, opts.Chunk, MaxChunk, DefaultChunk)
	}
	switch name {
	case "read":
		return newReadPath(opts), nil
	case "mmap":
		return newMmapPath(opts), nil
	case "sendfile":
		return newSendfilePath(opts), nil
	case "splice":
		return newSplicePath(opts), nil
	case "zerocopy":
		return newZerocopyPath(opts), nil
	case "uring":
		return newUringPath(opts), nil
	case "uring-splice":
		return newUringSplicePath(opts), nil
	case "uring-zc":
		return newUringZCPath(opts), nil
	}
	return nil, fmt.Errorf("unknown transfer path %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// errShortSpan reports a span that ends before its file does; the caller
// asked for bytes that are not there (a truncated or replaced segment).
var errShortSpan = errors.New("file ended before the span did")

// sysc names a syscall a path makes, as an index into the ledger's
// counters (no map lookup or lock on the data thread's hot path).
type sysc int

const (
	scPread64 sysc = iota
	scWrite
	scWritev
	scSendfile
	scSplice
	scSendmsg
	scRecvmsg
	scMmap
	scMunmap
	scFstat
	scPipe2
	scFcntl
	scSetsockopt
	scPpoll
	scClose
	scIoUringSetup
	scIoUringEnter
	scRead
	numSysc
)

// String is the syscall's name as strace and the probes spell it.
func (s sysc) String() string {
	switch s {
	case scPread64:
		return "pread64"
	case scWrite:
		return "write"
	case scWritev:
		return "writev"
	case scSendfile:
		return "sendfile"
	case scSplice:
		return "splice"
	case scSendmsg:
		return "sendmsg"
	case scRecvmsg:
		return "recvmsg"
	case scMmap:
		return "mmap"
	case scMunmap:
		return "munmap"
	case scFstat:
		return "fstat"
	case scPipe2:
		return "pipe2"
	case scFcntl:
		return "fcntl"
	case scSetsockopt:
		return "setsockopt"
	case scPpoll:
		return "ppoll"
	case scClose:
		return "close"
	case scIoUringSetup:
		return "io_uring_setup"
	case scIoUringEnter:
		return "io_uring_enter"
	case scRead:
		return "read"
	}
	return fmt.Sprintf("sysc(%d)", int(s))
}

// ledger is the account behind every path's Ledger. The data thread
// writes it; Ledger() may be called from any goroutine. The per-call
// counters are atomics (a few ns each, no lock); the rarer fields sit
// under mu.
type ledger struct {
	calls     [numSysc]atomic.Uint64
	bytesSent atomic.Uint64
	spanBytes atomic.Uint64
	zcSends   atomic.Uint64
	zcBytes   atomic.Uint64
	// ops counts io_uring ops by opcode: submitted, completed, failed, bytes.
	ops [numUringOps][4]atomic.Uint64

	mu sync.Mutex
	l  Ledger // Chunk, PipeSize, notification counts, Notes
}

func (lg *ledger) init(chunk int) {
	lg.l.Chunk = chunk
}

// call counts one syscall attempt, successful or not.
func (lg *ledger) call(s sysc) { lg.calls[s].Add(1) }

// sent counts bytes put onto the socket; span says they came from a file.
func (lg *ledger) sent(n int64, span bool) {
	lg.bytesSent.Add(uint64(n))
	if span {
		lg.spanBytes.Add(uint64(n))
	}
}

// zcSent counts one MSG_ZEROCOPY send of n bytes.
func (lg *ledger) zcSent(n int) {
	lg.zcSends.Add(1)
	lg.zcBytes.Add(uint64(n))
}

// zcNotified counts one zerocopy completion notification; copied says the
// kernel copied its bytes after all. The first copied one adds note.
func (lg *ledger) zcNotified(copied bool, bytes uint64, note string) {
	first := false
	lg.update(func(l *Ledger) {
		l.ZCNotes++
		if copied {
			first = l.ZCCopied == 0
			l.ZCCopied++
			l.ZCCopiedByte += bytes
		}
	})
	if first {
		lg.note(note)
	}
}

func (lg *ledger) note(s string) {
	lg.mu.Lock()
	lg.l.Notes = append(lg.l.Notes, s)
	lg.mu.Unlock()
}

func (lg *ledger) update(f func(l *Ledger)) {
	lg.mu.Lock()
	f(&lg.l)
	lg.mu.Unlock()
}

func (lg *ledger) snapshot() Ledger {
	lg.mu.Lock()
	c := lg.l
	c.Notes = append([]string(nil), lg.l.Notes...)
	lg.mu.Unlock()
	c.Calls = make(map[string]uint64, numSysc)
	for i := range lg.calls {
		if n := lg.calls[i].Load(); n > 0 {
			c.Calls[sysc(i).String()] = n
		}
	}
	c.BytesSent, c.SpanBytes = lg.bytesSent.Load(), lg.spanBytes.Load()
	c.ZCSends, c.ZCBytes = lg.zcSends.Load(), lg.zcBytes.Load()
	for i := range lg.ops {
		o := OpCount{lg.ops[i][0].Load(), lg.ops[i][1].Load(), lg.ops[i][2].Load(), lg.ops[i][3].Load()}
		if o != (OpCount{}) {
			if c.Ops == nil {
				c.Ops = map[string]OpCount{}
			}
			c.Ops[uringOp(i).code().String()] = o
		}
	}
	return c
}

// pathBase is what every path carries: its syscall ledger, its corker and
// its chunk size, with the Ledger method they share.
type pathBase struct {
	lg    ledger
	ck    corker
	chunk int
}

func (b *pathBase) init(opts Options) {
	b.chunk = opts.chunk()
	b.lg.init(b.chunk)
	b.ck = corker{off: opts.NoCork, chunk: b.chunk}
}

// Ledger returns the syscalls and bytes of the path so far.
func (b *pathBase) Ledger() Ledger { return b.lg.snapshot() }

// settle is the one rule for what a socket syscall's result means to the
// loop that retries it: nil to go on (bytes moved; interrupted, EINTR; or
// would block, EAGAIN, and the socket is writable again), else why the loop
// stops: the syscall's error, or zero when it moved nothing. The caller
// has counted the call and the bytes already.
func settle(sock int, n int64, err error, lg *ledger, zero error) error {
	switch {
	case err == unix.EINTR:
		return nil
	case err == unix.EAGAIN:
		return waitWritable(sock, lg)
	case err != nil:
		return err
	case n == 0:
		return zero
	}
	return nil
}

// errWroteNothing is a write-like syscall that returned 0 bytes.
var errWroteNothing = errors.New("wrote 0 bytes")

// waitWritable blocks until sock accepts data. A blocking socket never needs
// it; it keeps the paths correct if a caller hands them a non-blocking one.
func waitWritable(sock int, lg *ledger) error {
	fds := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLOUT}}
	for {
		lg.call(scPpoll)
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll socket %d for writing: %w", sock, err)
		}
		return nil
	}
}

// writeAll writes b to sock with write(2), retrying short writes.
func writeAll(sock int, b []byte, span bool, lg *ledger) (int64, error) {
	var total int64
	for len(b) > 0 {
		lg.call(scWrite)
		n, err := unix.Write(sock, b)
		if n > 0 {
			total += int64(n)
			lg.sent(int64(n), span)
			b = b[n:]
		}
		if err := settle(sock, int64(n), err, lg, errWroteNothing); err != nil {
			return total, fmt.Errorf("write %d bytes to socket %d: %w", len(b), sock, err)
		}
	}
	return total, nil
}

// maxIov bounds the number of framing buffers gathered into one writev.
const maxIov = 64

// writeBytesParts writes consecutive in-memory parts: one write(2) for a
// single buffer, one writev(2) for several, retrying short writes.
func writeBytesParts(sock int, bufs [][]byte, lg *ledger) (int64, error) {
	if len(bufs) == 1 {
		return writeAll(sock, bufs[0], false, lg)
	}
	var total int64
	iov := make([][]byte, 0, min(len(bufs), maxIov))
	for len(bufs) > 0 {
		iov = iov[:0]
		for _, b := range bufs {
			if len(iov) == maxIov {
				break
			}
			iov = append(iov, b)
		}
		lg.call(scWritev)
		n, err := unix.Writev(sock, iov)
		if n > 0 {
			total += int64(n)
			lg.sent(int64(n), false)
			bufs = dropWritten(bufs, n)
		}
		if err := settle(sock, int64(n), err, lg, errWroteNothing); err != nil {
			return total, fmt.Errorf("writev %d buffers to socket %d: %w", len(iov), sock, err)
		}
	}
	return total, nil
}

// dropWritten drops the buffers a writev of n bytes sent in full, trims a
// partly sent one, and skips empty buffers after them.
func dropWritten(bufs [][]byte, n int) [][]byte {
	for n > 0 {
		if n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		} else {
			bufs[0] = bufs[0][n:]
			n = 0
		}
	}
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	return bufs
}

// corker sets TCP_CORK around responses that take several syscalls.
type corker struct {
	off   bool // Options.NoCork
	chunk int
}

// cork corks sock if parts need more than one data syscall and returns
// the function that uncorks it (pushing the last partial segment).
func (c corker) cork(sock int, parts []Part, lg *ledger) func() {
	if c.off {
		return func() {}
	}
	var n int64
	for _, p := range parts {
		n += int64(len(p.Bytes)) + p.Span.Len
	}
	if n <= int64(c.chunk) {
		return func() {}
	}
	lg.call(scSetsockopt)
	if err := unix.SetsockoptInt(sock, unix.IPPROTO_TCP, unix.TCP_CORK, 1); err != nil {
		return func() {} // not TCP (a unix socket in a test): nothing to cork
	}
	return func() {
		lg.call(scSetsockopt)
		_ = unix.SetsockoptInt(sock, unix.IPPROTO_TCP, unix.TCP_CORK, 0)
	}
}

// sendParts walks parts in order: runs of in-memory parts go out with
// write/writev, each file span through span (the path's own loop).
func sendParts(sock int, parts []Part, lg *ledger, ck corker, span func(sock int, s Span, last bool) (int64, error)) (int64, error) {
	defer ck.cork(sock, parts, lg)()
	var total int64
	var pending [][]byte
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		n, err := writeBytesParts(sock, pending, lg)
		total += n
		pending = pending[:0]
		return err
	}
	for i, p := range parts {
		if len(p.Bytes) > 0 {
			if p.Span.Len != 0 {
				return total, fmt.Errorf("part %d has both bytes and a span; give one or the other", i)
			}
			pending = append(pending, p.Bytes)
			continue
		}
		if p.Span.Len == 0 {
			continue
		}
		if p.Span.Len < 0 || p.Span.Off < 0 {
			return total, fmt.Errorf("part %d: span off %d len %d is negative", i, p.Span.Off, p.Span.Len)
		}
		if err := flush(); err != nil {
			return total, err
		}
		last := true
		for _, q := range parts[i+1:] {
			if len(q.Bytes) > 0 || q.Span.Len > 0 {
				last = false
				break
			}
		}
		n, err := span(sock, p.Span, last)
		total += n
		if err != nil {
			return total, fmt.Errorf("span %d (fd %d, off %d, len %d): %w", i, p.Span.Fd, p.Span.Off, p.Span.Len, err)
		}
	}
	if err := flush(); err != nil {
		return total, err
	}
	return total, nil
}
