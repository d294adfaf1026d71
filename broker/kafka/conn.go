package kafka

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// conn is one client connection. Everything below serve runs on the
// connection's own locked OS thread.
type conn struct {
	srv      *Server
	peer     string
	ip       string // peer's address, for the per-address limit
	local    string // the address the client connected to
	listener string
	pathName string
	tlsCfg   *tls.Config        // TLS listener: the tls path serves this connection
	reader   transfer.TLSReader // set when the path reads requests too (tls)

	mu     sync.Mutex // guards fd against Shutdown racing the final close
	fd     int
	closed bool

	path  transfer.Path
	in    []byte // request bytes; in[r:w] are read but not yet consumed
	r, w  int
	out   []byte // response encoding buffer, reused
	parts []transfer.Part
	fetch fetchScratch

	base       []byte    // the 64 KiB buffer, kept while in is a large request's mapping
	reserved   int64     // bytes of srv.budget this connection's buffer holds
	lastActive time.Time // when the last request was answered (or the connection opened)
	frameStart time.Time // when the current request's first byte arrived; zero before

	filter connFilter // broker-side record filter asked in the client id (filter.go)
}

// initialInBuf is the request buffer a connection starts with; a larger
// request (up to MaxRequestBytes, within the server's budget) gets a
// mapping of its own while it is read and answered (see mapLarge).
const initialInBuf = 64 << 10

// errFrameSize is a size prefix outside 0..MaxRequestBytes.
var errFrameSize = errors.New("request size out of range")

func (c *conn) shutdown(how int) {
	c.mu.Lock()
	if !c.closed {
		unix.Shutdown(c.fd, how)
	}
	c.mu.Unlock()
}

func (c *conn) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		unix.Close(c.fd)
	}
	c.mu.Unlock()
}

// serve runs the connection. The goroutine locks its OS thread and never
// unlocks it, so the thread exits with the connection and its id is never
// reused by other work while the probes may still attribute it.
func (c *conn) serve() {
	runtime.LockOSThread()
	defer c.srv.forget(c)
	defer c.close()
	defer func() {
		if v := recover(); v != nil {
			c.srv.logf("connection %s: internal error, connection closed: %v\n%s", c.peer, v, debug.Stack())
		}
	}()
	p, err := c.newPath()
	if err != nil {
		c.srv.logf("connection %s: %v", c.peer, err)
		return
	}
	c.path = p
	defer p.Close()
	if reg := c.srv.cfg.Registry; reg != nil {
		unregister := reg.Register(transfer.ConnInfo{TID: unix.Gettid(), Path: c.pathName, Peer: c.peer, Listener: c.listener})
		defer unregister()
	}
	c.in = make([]byte, initialInBuf)
	defer c.release()
	c.lastActive = time.Now()
	for {
		frame, err := c.readFrame()
		if err != nil {
			c.logClose(err)
			return
		}
		if err := c.handle(frame); err != nil {
			c.srv.logf("connection %s: %v; closing it", c.peer, err)
			return
		}
		c.lastActive = time.Now()
		c.shrink()
	}
}

// logClose says why a connection that stopped reading requests closed;
// limits are logged at most once a second each.
func (c *conn) logClose(err error) {
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, errIdle):
		c.srv.counts.idle.Add(1)
		c.srv.limitLog.logf(c.srv.logf, "idle", "connection %s: %v; closing it", c.peer, err)
	case errors.Is(err, errRequestTimeout):
		c.srv.counts.timeouts.Add(1)
		c.srv.limitLog.logf(c.srv.logf, "request-timeout", "connection %s: %v; closing it", c.peer, err)
	default:
		c.srv.logf("connection %s: %v; closing it", c.peer, err)
	}
}

// reserve makes the request buffer's share of the server's budget cover
// need bytes, waiting (and reading nothing) until the bytes are free or
// the request deadline passes.
func (c *conn) reserve(need int) error {
	b := c.srv.budget
	if b == nil || need <= initialInBuf || int64(need) <= c.reserved {
		return nil
	}
	more := int64(need) - c.reserved
	deadline := c.frameStart.Add(c.srv.cfg.RequestTimeout)
	if c.srv.cfg.RequestTimeout < 0 {
		deadline = time.Now().Add(24 * time.Hour)
	}
	b.mu.Lock()
	short := b.avail < more
	b.mu.Unlock()
	if short {
		c.srv.counts.waits.Add(1)
		c.srv.limitLog.logf(c.srv.logf, "buffered-bytes", "connection %s: a %d-byte request waits for buffer memory (--max-buffered-request-bytes %d in use)", c.peer, need, c.srv.cfg.MaxBufferedRequestBytes)
	}
	if err := b.acquire(more, deadline, c.srv.closing); err != nil {
		return fmt.Errorf("%w: waited %v for %d bytes of request buffer (--max-buffered-request-bytes %d): %v", errRequestTimeout, time.Since(c.frameStart).Round(time.Millisecond), need, c.srv.cfg.MaxBufferedRequestBytes, err)
	}
	c.reserved += more
	return nil
}

// mapLarge moves the unconsumed bytes into an anonymous mapping of
// exactly need bytes for a request larger than the base buffer. Its pages
// become resident only as the request's bytes arrive, and munmap returns
// them at once when the request is answered: the broker's memory follows
// the bytes received, not the size prefix, and leaves no garbage behind.
func (c *conn) mapLarge(need int) error {
	m, err := unix.Mmap(-1, 0, need, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		c.giveBack()
		return fmt.Errorf("map a %d-byte request buffer: %w (lower --max-buffered-request-bytes or --max-request-bytes)", need, err)
	}
	n := copy(m, c.in[c.r:c.w])
	if c.base != nil {
		_ = unix.Munmap(c.in)
	} else {
		c.base = c.in
	}
	c.in, c.r, c.w = m, 0, n
	return nil
}

// shrink unmaps a large request's buffer and gives its reservation back
// once the request is answered, keeping any pipelined bytes that follow.
//
// A mapping up to keepLarge is kept for the connection's next large
// request while no other connection waits for the budget: a producer
// sending 1 MiB batches would otherwise fault in every page of every
// request again (broker CPU per record +70%). It is given back when the
// connection falls silent for a socket timeout (see fill), when it ends,
// or when another connection waits.
func (c *conn) shrink() {
	if c.base == nil || c.w-c.r > len(c.base) {
		return
	}
	if len(c.in) <= keepLarge && !c.srv.budget.contended() {
		return
	}
	c.unmapLarge()
}

// keepLarge is the largest request mapping a connection keeps between
// requests.
const keepLarge = 4 << 20

// unmapLarge goes back to the base buffer with the unconsumed bytes (they
// fit: callers check) and gives the reservation back.
func (c *conn) unmapLarge() {
	n := copy(c.base, c.in[c.r:c.w])
	_ = unix.Munmap(c.in)
	c.in, c.r, c.w, c.base = c.base, 0, n, nil
	c.giveBack()
}

// giveBack returns the connection's share of the request budget; at the
// connection's end it also unmaps a large request's buffer.
func (c *conn) giveBack() {
	if c.srv.budget != nil {
		c.srv.budget.release(c.reserved)
	}
	c.reserved = 0
}

func (c *conn) release() {
	if c.base != nil {
		_ = unix.Munmap(c.in)
		c.in, c.base = nil, nil
	}
	c.giveBack()
}

// readFrame returns the next request frame without its size prefix. The
// slice is valid until the next call.
func (c *conn) readFrame() ([]byte, error) {
	c.frameStart = time.Time{}
	if c.w > c.r {
		c.frameStart = time.Now() // pipelined: it arrived with the last one
	}
	if err := c.fill(4); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(c.in[c.r:]))
	if size < 0 || size > c.srv.cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w: size prefix %d (allowed 0..%d; raise --max-request-bytes if a client sends bigger requests)", errFrameSize, size, c.srv.cfg.MaxRequestBytes)
	}
	if need := 4 + int(size); need > len(c.in) {
		if err := c.reserve(need); err != nil {
			return nil, err
		}
		if err := c.mapLarge(need); err != nil {
			return nil, err
		}
	}
	if err := c.fill(4 + int(size)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("connection closed inside a %d-byte request: %w", size, io.ErrUnexpectedEOF)
		}
		return nil, err
	}
	frame := c.in[c.r+4 : c.r+4+int(size)]
	c.r += 4 + int(size)
	return frame, nil
}

// fill makes at least n unconsumed bytes available in c.in[c.r:c.w],
// reading from the socket with blocking read(2) calls. It reads as much as
// the buffer holds, so small pipelined requests cost one read between them.
func (c *conn) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r > 0 && (len(c.in)-c.r < n || c.r == c.w) {
		c.w = copy(c.in, c.in[c.r:c.w])
		c.r = 0
	}
	if len(c.in)-c.r < n {
		return fmt.Errorf("internal error: a %d-byte read into a %d-byte buffer", n, len(c.in)-c.r)
	}
	for c.w-c.r < n {
		m, err := c.read(c.in[c.w:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN { // SO_RCVTIMEO: the client was silent
			if err := c.checkDeadlines(); err != nil {
				return err
			}
			if c.base != nil && c.frameStart.IsZero() && c.r == c.w {
				c.unmapLarge() // silent between requests: give the kept mapping back
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("read from socket: %w", err)
		}
		if m == 0 {
			return io.EOF
		}
		c.w += m
		if c.frameStart.IsZero() {
			c.frameStart = time.Now()
		} else if err := c.checkDeadlines(); err != nil {
			return err
		}
	}
	return nil
}

// checkDeadlines enforces the request deadline on a started request and
// the idle timeout between requests. It uses only the vDSO clock, so a
// busy connection's reads cost no extra syscall.
func (c *conn) checkDeadlines() error {
	now := time.Now()
	if !c.frameStart.IsZero() {
		if d := c.srv.cfg.RequestTimeout; d > 0 && now.Sub(c.frameStart) > d {
			return fmt.Errorf("%w: %d bytes of a request arrived in %v (--request-timeout %v; the client is too slow or stalled)", errRequestTimeout, c.w-c.r, now.Sub(c.frameStart).Round(time.Millisecond), d)
		}
		return nil
	}
	if d := c.srv.cfg.IdleTimeout; d > 0 && now.Sub(c.lastActive) > d {
		return fmt.Errorf("%w for %v (--idle-timeout %v)", errIdle, now.Sub(c.lastActive).Round(time.Millisecond), d)
	}
	return nil
}

// send writes framing-only bytes through the connection's transfer path,
// so the path's ledger accounts for every byte the thread puts on the
// socket.
func (c *conn) send(b []byte) error {
	c.parts = append(c.parts[:0], transfer.Part{Bytes: b})
	_, err := c.path.Send(c.fd, c.parts)
	if err != nil {
		return fmt.Errorf("send %d-byte response: %w", len(b), err)
	}
	return nil
}

// handle decodes and answers one request. A returned error closes the
// connection.
func (c *conn) handle(frame []byte) error {
	h, req, err := decodeRequest(frame)
	if errors.Is(err, errUnsupported) {
		return c.unsupported(h, err)
	}
	if err != nil {
		return err
	}
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		resp = apiVersionsResponse(h.version, 0)
	case *kmsg.MetadataRequest:
		resp = c.srv.metadata(r, c.local)
	case *kmsg.ProduceRequest:
		pr, failed := c.produceDeadLetters(r) // dlq.go, then srv.produce
		if r.Acks == 0 {
			if failed != nil {
				// Kafka's way of telling an acks=0 producer: close.
				return fmt.Errorf("acks=0 produce failed: %v", failed)
			}
			return nil
		}
		resp = pr
	case *kmsg.FetchRequest:
		return c.serveFetch(h, r)
	case *kmsg.ListOffsetsRequest:
		resp = c.srv.listOffsets(r)
	case *kmsg.CreateTopicsRequest:
		resp = c.srv.createTopics(r)
	case *kmsg.DeleteTopicsRequest:
		resp = c.srv.deleteTopics(r)
	case *kmsg.InitProducerIDRequest:
		resp = c.srv.initProducerID(r)
	default:
		var ok bool
		if resp, ok = c.groupRequest(h, req); !ok {
			return c.unsupported(h, fmt.Errorf("%w: %s", errUnsupported, kmsg.NameForKey(h.key)))
		}
	}
	resp.SetVersion(h.version)
	c.out = appendResponse(c.out[:0], h, resp)
	return c.send(c.out)
}

// unsupported answers a request the broker does not serve. ApiVersions
// gets Kafka's answer (a v0 response with UNSUPPORTED_VERSION and the
// served ranges, so the client can retry lower); any other API the kmsg
// package knows at that version gets its response with a top-level error
// code set to UNSUPPORTED_VERSION; anything else closes the connection.
func (c *conn) unsupported(h header, why error) error {
	if h.key == 18 {
		h.version = 0
		c.out = appendResponse(c.out[:0], h, apiVersionsResponse(0, kerr.UnsupportedVersion.Code))
		return c.send(c.out)
	}
	resp := kmsg.ResponseForKey(h.key)
	if resp == nil || h.version < 0 || h.version > resp.MaxVersion() {
		return why
	}
	resp.SetVersion(h.version)
	if f := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode"); f.IsValid() && f.Kind() == reflect.Int16 && f.CanSet() {
		f.SetInt(int64(kerr.UnsupportedVersion.Code))
	} // else an empty response: per-item errors have no items to go on
	if c.srv.unsupported.firstTime(h.key, h.version) {
		c.srv.logf("connection %s (client id %q): %v; answered UNSUPPORTED_VERSION (logged once per API and version)", c.peer, h.clientID, why)
	}
	c.out = appendResponse(c.out[:0], h, resp)
	return c.send(c.out)
}

// newPath makes the connection's transfer path: the tls path on a TLS
// listener (which then reads the requests too), else the listener's.
func (c *conn) newPath() (transfer.Path, error) {
	opts := transfer.Options{Chunk: c.srv.cfg.Chunk}
	if c.tlsCfg == nil {
		return transfer.New(c.pathName, opts)
	}
	p, err := transfer.NewTLS(c.fd, c.tlsCfg, opts)
	if err != nil {
		return nil, err
	}
	c.reader = p.(transfer.TLSReader)
	return p, nil
}

// read reads request bytes: read(2) on the socket, or decrypted through
// the tls path (same EAGAIN on SO_RCVTIMEO, 0 at the end of the stream).
func (c *conn) read(b []byte) (int, error) {
	if c.reader != nil {
		return c.reader.Read(b)
	}
	return unix.Read(c.fd, b)
}
