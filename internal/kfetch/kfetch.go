// Package kfetch is a lean blocking Kafka Fetch client for one partition
// (Fetch v4, or v11 as the demo speaks it), used from one locked OS thread
// so that every syscall it makes is the consumer's own: no netpoller, no
// goroutine hand-off, so the probes see the consumer's real reads and
// wake-ups. It parses responses streaming through its buffer, optionally
// checking every record batch's CRC-32C.
package kfetch

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/recordbatch"
)

// DefaultBufSize is the read buffer bench's and the demo's consumers
// stream responses through, and the raw variant's receiver reads into.
const DefaultBufSize = 1 << 20

// MaxResponse bounds a response's size prefix: anything larger is garbage,
// not a Fetch response.
const MaxResponse = 256 << 20

// Config says what a Client asks for and how it reads.
type Config struct {
	Topic     string
	Partition int32
	// Version is the Fetch version spoken: 4 (max_bytes and isolation
	// level, no sessions) or 11 (the newest non-flexible one).
	Version  int16
	ClientID string
	MaxBytes int32         // request max_bytes and partition_max_bytes
	MaxWait  time.Duration // request max_wait_ms
	// BufSize is the read buffer: responses stream through it, so no read
	// asks for more. 0 sizes the buffer to each response instead (it
	// grows, never shrinks): the size prefix is read alone, then every
	// read asks for the rest of the response.
	BufSize int
	Verify  bool // check every batch's CRC-32C
	// Tap, if set, receives every complete batch's bytes in order (tests
	// hash them against the log).
	Tap io.Writer
	// Keep, if set, is the consumer's own record filter: it gets every
	// whole batch (contiguous, so batches must fit BufSize) and returns
	// the bytes of it the consumer wanted; the rest count as wasted.
	Keep func(batch []byte) (useful int64, err error)
}

// Client fetches one partition over one blocking socket. Its methods are
// not safe for concurrent use, except Shutdown.
type Client struct {
	fd    int
	tls   *tls.Conn // after StartTLS: the TLS session on fd
	cfg   Config
	table *crc32.Table
	local string // local address, as the broker sees the peer ("" unless dialled)

	buf    []byte
	r, w   int   // unread bytes are buf[r:w]
	unread int64 // bytes of the current response still in the socket, -1 unknown
	lowat  int   // SO_RCVLOWAT mark for the body of a response (0: kernel default)
	low    bool  // SO_RCVLOWAT is currently 1 (a response's size prefix or tail)
	corrID int32
	req    []byte

	// Totals.
	Reads       uint64 // read(2) calls on the socket
	Writes      uint64 // write(2) calls on the socket
	Fetches     uint64
	RecordBytes int64 // record-set bytes received
	Batches     uint64
	UsefulBytes int64 // with Config.Keep: bytes of batches Keep wanted
	WastedBytes int64 // with Config.Keep: received batch bytes Keep did not want
}

// Result is one Fetch's answer for the partition.
type Result struct {
	Bytes         int64 // response size on the wire, size prefix included
	ErrCode       int16 // the partition's Kafka error code
	HighWatermark int64
	LogStart      int64 // log start offset (v5+; -1 in v4)
	Next          int64 // offset after the last complete batch, or the request offset
	RecordBytes   int64 // record-set bytes
}

func newClient(fd int, cfg Config) (*Client, error) {
	if cfg.Version != 4 && cfg.Version != 11 {
		return nil, fmt.Errorf("kfetch: Fetch version %d: this client speaks v4 and v11", cfg.Version)
	}
	if cfg.BufSize < 0 {
		return nil, fmt.Errorf("kfetch: buffer size %d is negative", cfg.BufSize)
	}
	c := &Client{fd: fd, cfg: cfg, table: crc32.MakeTable(crc32.Castagnoli), unread: -1}
	if cfg.BufSize > 0 {
		c.buf = make([]byte, cfg.BufSize)
	} else {
		c.buf = make([]byte, 4)
	}
	return c, nil
}

// New wraps fd, a connected blocking TCP socket. The socket's SO_RCVLOWAT,
// read once here, is the mark for the body of responses; the client drops
// it to 1 for each size prefix and tail (see fill).
func New(fd int, cfg Config) (*Client, error) {
	c, err := newClient(fd, cfg)
	if err != nil {
		return nil, err
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT); err == nil && v > 1 {
		c.lowat = v
	}
	return c, nil
}

// Dial connects a blocking socket to addr (host:port, IPv4) and returns a
// Client that owns it. rcvlowat > 0 is the SO_RCVLOWAT mark for the body of
// responses; the socket gets a fixed receive buffer of twice that.
func Dial(addr string, rcvlowat int, cfg Config) (*Client, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve broker address %q: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c, err := newClient(fd, cfg)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if rcvlowat > 0 {
		// A fixed receive buffer well above the low-water mark: left to
		// itself, setting SO_RCVLOWAT clamps the receive window to the mark,
		// and a window just under it never lets the mark be reached.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2*rcvlowat); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set SO_RCVBUF %d for SO_RCVLOWAT %d: %w", 2*rcvlowat, rcvlowat, err)
		}
		// The mark itself is set by the first read that wants it.
		c.lowat, c.low = rcvlowat, true
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect to broker %s: %w (is the broker listening?)", addr, err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	l4, ok := lsa.(*unix.SockaddrInet4)
	if !ok {
		unix.Close(fd)
		return nil, fmt.Errorf("unexpected local address type %T", lsa)
	}
	c.local = net.JoinHostPort(net.IP(l4.Addr[:]).String(), fmt.Sprint(l4.Port))
	return c, nil
}

// Local is the local address of a dialled client's socket, which the broker
// sees as the peer ("" for a client made with New).
func (c *Client) Local() string { return c.local }

// Shutdown shuts the socket down both ways, waking a read blocked in
// another goroutine; safe to call concurrently with a fetch.
func (c *Client) Shutdown() error { return unix.Shutdown(c.fd, unix.SHUT_RDWR) }

// Close closes the socket.
func (c *Client) Close() error { return unix.Close(c.fd) }

// request encodes a Fetch request for offset.
func (c *Client) request(offset int64) []byte {
	c.corrID++
	v := c.cfg.Version
	b := c.req[:0]
	b = append(b, 0, 0, 0, 0)               // size
	b = binary.BigEndian.AppendUint16(b, 1) // api key Fetch
	b = binary.BigEndian.AppendUint16(b, uint16(v))
	b = binary.BigEndian.AppendUint32(b, uint32(c.corrID))
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.cfg.ClientID)))
	b = append(b, c.cfg.ClientID...)
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // replica id -1
	b = binary.BigEndian.AppendUint32(b, uint32(c.cfg.MaxWait/time.Millisecond))
	b = binary.BigEndian.AppendUint32(b, 1) // min bytes
	b = binary.BigEndian.AppendUint32(b, uint32(c.cfg.MaxBytes))
	b = append(b, 0) // isolation: read uncommitted
	if v >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0)          // session id
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // session epoch -1: no session
	}
	b = binary.BigEndian.AppendUint32(b, 1) // one topic
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.cfg.Topic)))
	b = append(b, c.cfg.Topic...)
	b = binary.BigEndian.AppendUint32(b, 1) // one partition
	b = binary.BigEndian.AppendUint32(b, uint32(c.cfg.Partition))
	if v >= 9 {
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // current leader epoch -1
	}
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	if v >= 5 {
		b = binary.BigEndian.AppendUint64(b, 0xffffffffffffffff) // log start offset -1
	}
	b = binary.BigEndian.AppendUint32(b, uint32(c.cfg.MaxBytes))
	if v >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0) // no forgotten topics
	}
	if v >= 11 {
		b = binary.BigEndian.AppendUint16(b, 0) // rack id ""
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.req = b
	return b
}

// setLow puts SO_RCVLOWAT at 1 (low) or at the mark.
func (c *Client) setLow(low bool) error {
	if low == c.low {
		return nil
	}
	v := c.lowat
	if low {
		v = 1
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, v); err != nil {
		return fmt.Errorf("set SO_RCVLOWAT %d on the consumer socket: %w", v, err)
	}
	c.low = low
	return nil
}

// fill reads more bytes from the socket, compacting first.
func (c *Client) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	// Never ask for more than the current response holds: a read that
	// asks past the response's end would wait for bytes that never come.
	want := len(c.buf) - c.w
	switch {
	case c.unread >= 0:
		want = int(min(int64(want), c.unread))
	case c.lowat > 0 || c.cfg.BufSize == 0:
		want = min(want, 4-(c.w-c.r)) // just the size prefix
	}
	// The mark applies only while at least twice that much of the response
	// is still to come, and is 1 for the size prefix and the tail: a read
	// that already copied part of the queue sleeps until the mark's worth
	// of new bytes arrives (the kernel wakes a reader on sk_rcvlowat queued
	// bytes, whatever it asked for), so a mark above the rest of a response
	// would never wake it (measured: such a consumer hangs).
	if c.lowat > 0 {
		if err := c.setLow(c.unread < 2*int64(c.lowat)); err != nil {
			return err
		}
	}
	if want <= 0 {
		return errors.New("fetch response: parser wants bytes past the response's end")
	}
	for {
		c.Reads++
		n, err := c.read(c.buf[c.w : c.w+want])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read fetch response: %w", err)
		}
		if n == 0 {
			return errors.New("broker closed the connection mid-response")
		}
		c.w += n
		if c.unread >= 0 {
			c.unread -= int64(n)
		}
		return nil
	}
}

// need makes n contiguous bytes available at buf[r:].
func (c *Client) need(n int) ([]byte, error) {
	for c.w-c.r < n {
		if len(c.buf)-c.r < n {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
	b := c.buf[c.r : c.r+n]
	c.r += n
	return b, nil
}

// stream passes the next n bytes to f in whatever pieces the buffer holds.
func (c *Client) stream(n int64, f func([]byte)) error {
	for n > 0 {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return err
			}
		}
		k := min(int64(c.w-c.r), n)
		if f != nil {
			f(c.buf[c.r : c.r+int(k)])
		}
		c.r += int(k)
		n -= k
	}
	return nil
}

// Fetch sends one request for offset and reads the whole response.
func (c *Client) Fetch(offset int64) (Result, error) {
	if err := c.Send(offset); err != nil {
		return Result{Next: offset, LogStart: -1}, err
	}
	return c.Response(offset)
}

// Send writes a Fetch request for offset.
func (c *Client) Send(offset int64) error {
	req := c.request(offset)
	for len(req) > 0 {
		c.Writes++
		n, err := c.write(req)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write fetch request: %w", err)
		}
		req = req[n:]
	}
	c.Fetches++
	return nil
}

// Response reads the response to the request Send wrote for offset. An
// error leaves the connection mid-response: close it.
func (c *Client) Response(offset int64) (Result, error) {
	res := Result{Next: offset, LogStart: -1}
	size, err := c.responseSize()
	if err != nil {
		return res, err
	}
	res.Bytes = size + 4
	rr := &respReader{c: c, left: size, size: size}
	if err := rr.header(); err != nil {
		return res, err
	}
	ntopics, err := rr.u32()
	if err != nil {
		return res, err
	}
	var parts int64
	for t := uint32(0); t < ntopics; t++ {
		n, err := rr.u16()
		if err != nil {
			return res, err
		}
		if _, err := rr.take(int(n)); err != nil { // topic name
			return res, err
		}
		nparts, err := rr.u32()
		if err != nil {
			return res, err
		}
		for p := uint32(0); p < nparts; p++ {
			parts++
			if err := rr.partition(&res); err != nil {
				return res, err
			}
		}
	}
	if rr.left > 0 {
		if err := c.stream(rr.left, nil); err != nil {
			return res, err
		}
	}
	c.RecordBytes += res.RecordBytes
	if parts != 1 {
		return res, fmt.Errorf("fetch response holds %d partitions, want the one asked for", parts)
	}
	return res, nil
}

// responseSize reads a response's size prefix and readies the buffer.
func (c *Client) responseSize() (int64, error) {
	c.unread = -1 // until the size prefix is in
	b, err := c.need(4)
	if err != nil {
		return 0, err
	}
	size := binary.BigEndian.Uint32(b)
	if size < 4 || size > MaxResponse {
		return 0, fmt.Errorf("fetch response size %d out of range [4, %d] (not a Kafka response, or the stream is out of step)", size, MaxResponse)
	}
	if c.cfg.BufSize == 0 && len(c.buf) < int(size) {
		// Sized to the response: only the prefix was read, nothing is
		// buffered.
		c.buf = make([]byte, size)
		c.r, c.w = 0, 0
	}
	c.unread = int64(size) - int64(c.w-c.r)
	return int64(size), nil
}

// respReader reads one response's fields, accounting every byte against
// what its size prefix left.
type respReader struct {
	c          *Client
	left, size int64
}

func (rr *respReader) take(n int) ([]byte, error) {
	rr.left -= int64(n)
	if rr.left < 0 {
		return nil, fmt.Errorf("fetch response shorter than its fields (size %d)", rr.size)
	}
	return rr.c.need(n)
}

func (rr *respReader) u16() (uint16, error) {
	b, err := rr.take(2)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b), nil
}

func (rr *respReader) u32() (uint32, error) {
	b, err := rr.take(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

// header checks the correlation id and, from v7, the top-level error.
func (rr *respReader) header() error {
	corr, err := rr.u32()
	if err != nil {
		return err
	}
	if int32(corr) != rr.c.corrID {
		return fmt.Errorf("fetch response correlation id %d, want %d", int32(corr), rr.c.corrID)
	}
	if _, err := rr.take(4); err != nil { // throttle_time_ms
		return err
	}
	if rr.c.cfg.Version < 7 {
		return nil
	}
	code, err := rr.u16()
	if err != nil {
		return err
	}
	if _, err := rr.take(4); err != nil { // session id
		return err
	}
	if code != 0 {
		return fmt.Errorf("fetch failed: %w", kerr.ErrorForCode(int16(code)))
	}
	return nil
}

// partition reads one partition's header and streams its records.
func (rr *respReader) partition(res *Result) error {
	hdr, err := rr.take(4 + 2 + 8 + 8) // partition, error, hw, last stable
	if err != nil {
		return err
	}
	res.ErrCode = int16(binary.BigEndian.Uint16(hdr[4:]))
	res.HighWatermark = int64(binary.BigEndian.Uint64(hdr[6:]))
	if rr.c.cfg.Version >= 5 {
		b, err := rr.take(8)
		if err != nil {
			return err
		}
		res.LogStart = int64(binary.BigEndian.Uint64(b))
	}
	naborted, err := rr.u32()
	if err != nil {
		return err
	}
	if int32(naborted) > 0 {
		if _, err := rr.take(int(naborted) * 16); err != nil {
			return err
		}
	}
	if rr.c.cfg.Version >= 11 {
		if _, err := rr.take(4); err != nil { // preferred read replica
			return err
		}
	}
	rlen, err := rr.u32()
	if err != nil || int32(rlen) <= 0 {
		return err
	}
	rr.left -= int64(rlen)
	if rr.left < 0 {
		return fmt.Errorf("fetch response records (%d bytes) overrun its size %d", rlen, rr.size)
	}
	next, err := rr.c.records(int64(rlen))
	if err != nil {
		return err
	}
	res.RecordBytes += int64(rlen)
	if next > res.Next {
		res.Next = next
	}
	return nil
}

// records walks a record set of n bytes batch by batch and returns the
// offset after the last complete batch (-1 for none). A trailing partial
// batch (the broker cut at max_bytes) is skipped, as Kafka clients do.
func (c *Client) records(n int64) (int64, error) {
	var next int64 = -1
	tap := func(b []byte) {
		if c.cfg.Tap != nil {
			c.cfg.Tap.Write(b)
		}
	}
	for n > 0 {
		if n < recordbatch.HeaderSize {
			return next, c.stream(n, nil)
		}
		b, err := c.need(recordbatch.HeaderSize)
		if err != nil {
			return next, err
		}
		h := recordbatch.Header(b)
		base := h.BaseOffset()
		if h.ShorterThanHeader() {
			return next, fmt.Errorf("batch at offset %d: length %d is shorter than a header", base, h.Length())
		}
		total := h.Size()
		if total > n {
			// Partial batch at the end of the response.
			return next, c.stream(n-recordbatch.HeaderSize, nil)
		}
		if m := h.MagicByte(); m != recordbatch.Magic {
			return next, fmt.Errorf("batch at offset %d: magic %d, this client reads v2 batches only", base, m)
		}
		nextOffset := h.NextOffset()
		if c.cfg.Keep != nil {
			if err := c.keep(base, total); err != nil {
				return next, err
			}
			next = nextOffset
			n -= total
			continue
		}
		body := total - recordbatch.HeaderSize
		tap(h)
		if c.cfg.Verify {
			want := h.CRC()
			crc := crc32.Update(0, c.table, h[recordbatch.PosAttributes:])
			if err := c.stream(body, func(b []byte) {
				crc = crc32.Update(crc, c.table, b)
				tap(b)
			}); err != nil {
				return next, err
			}
			if crc != want {
				return next, fmt.Errorf("batch at offset %d: CRC-32C %08x, header says %08x (corrupt record batch)", base, crc, want)
			}
		} else if err := c.stream(body, tap); err != nil {
			return next, err
		}
		c.Batches++
		next = nextOffset
		n -= total
	}
	return next, nil
}

// keep hands the whole batch whose header was just read to Config.Keep,
// checking its CRC-32C first with Verify.
func (c *Client) keep(base, total int64) error {
	if total > int64(len(c.buf)) {
		return fmt.Errorf("batch at offset %d: %d bytes, larger than the %d-byte buffer a filtering consumer reads whole batches into", base, total, len(c.buf))
	}
	c.r -= recordbatch.HeaderSize // the header is still in the buffer: take it with the body
	b, err := c.need(int(total))
	if err != nil {
		return err
	}
	if c.cfg.Verify {
		h := recordbatch.Header(b)
		if crc := crc32.Checksum(b[recordbatch.PosAttributes:], c.table); crc != h.CRC() {
			return fmt.Errorf("batch at offset %d: CRC-32C %08x, header says %08x (corrupt record batch)", base, crc, h.CRC())
		}
	}
	if c.cfg.Tap != nil {
		c.cfg.Tap.Write(b)
	}
	useful, err := c.cfg.Keep(b)
	if err != nil {
		return fmt.Errorf("batch at offset %d: %w", base, err)
	}
	c.Batches++
	c.UsefulBytes += useful
	c.WastedBytes += total - useful
	return nil
}

// StartTLS runs a TLS handshake on the client's socket with cfg; every
// later request and response goes through it (a tls listener). The
// handshake's reads and writes are plain syscalls on the calling thread.
func (c *Client) StartTLS(cfg *tls.Config) error {
	tc := tls.Client(transfer.FDConn(c.fd), cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake with the broker: %w", err)
	}
	c.tls = tc
	return nil
}

// read and write move bytes on the socket, through TLS after StartTLS.
func (c *Client) read(b []byte) (int, error) {
	if c.tls == nil {
		return unix.Read(c.fd, b)
	}
	n, err := c.tls.Read(b)
	if errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}

func (c *Client) write(b []byte) (int, error) {
	if c.tls == nil {
		return unix.Write(c.fd, b)
	}
	return c.tls.Write(b)
}
