package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"

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
	local    string // the address the client connected to
	listener string
	pathName string

	mu     sync.Mutex // guards fd against Shutdown racing the final close
	fd     int
	closed bool

	path  transfer.Path
	in    []byte // request bytes; in[r:w] are read but not yet consumed
	r, w  int
	out   []byte // response encoding buffer, reused
	parts []transfer.Part
	fetch fetchScratch
}

// initialInBuf is the request buffer a connection starts with; it grows
// up to MaxRequestBytes for large produce requests, and goes back to this
// size after a request larger than shrinkInBuf.
const (
	initialInBuf = 64 << 10
	shrinkInBuf  = 4 << 20
)

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
	p, err := transfer.New(c.pathName, transfer.Options{Chunk: c.srv.cfg.Chunk})
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
	for {
		frame, err := c.readFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.srv.logf("connection %s: %v; closing it", c.peer, err)
			}
			return
		}
		if err := c.handle(frame); err != nil {
			c.srv.logf("connection %s: %v; closing it", c.peer, err)
			return
		}
	}
}

// readFrame returns the next request frame without its size prefix. The
// slice is valid until the next call.
func (c *conn) readFrame() ([]byte, error) {
	if err := c.fill(4); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(c.in[c.r:]))
	if size < 0 || size > c.srv.cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w: size prefix %d (allowed 0..%d; raise --max-request-bytes if a client sends bigger requests)", errFrameSize, size, c.srv.cfg.MaxRequestBytes)
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
	if c.r == c.w && len(c.in) > shrinkInBuf && n <= initialInBuf {
		// A large produce request is done: give its buffer back.
		c.in, c.r, c.w = make([]byte, initialInBuf), 0, 0
	}
	if c.r > 0 && (len(c.in)-c.r < n || c.r == c.w) {
		c.w = copy(c.in, c.in[c.r:c.w])
		c.r = 0
	}
	if len(c.in)-c.r < n {
		grown := make([]byte, max(n, min(2*len(c.in), int(c.srv.cfg.MaxRequestBytes)+4)))
		c.w = copy(grown, c.in[c.r:c.w])
		c.r = 0
		c.in = grown
	}
	for c.w-c.r < n {
		m, err := unix.Read(c.fd, c.in[c.w:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read from socket: %w", err)
		}
		if m == 0 {
			return io.EOF
		}
		c.w += m
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
		pr, failed := c.srv.produce(r)
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
		return c.unsupported(h, fmt.Errorf("%w: %s", errUnsupported, kmsg.NameForKey(h.key)))
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
	f := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode")
	if !f.IsValid() || f.Kind() != reflect.Int16 || !f.CanSet() {
		return why
	}
	f.SetInt(int64(kerr.UnsupportedVersion.Code))
	c.srv.logf("connection %s: %v; answered UNSUPPORTED_VERSION", c.peer, why)
	c.out = appendResponse(c.out[:0], h, resp)
	return c.send(c.out)
}
