package transfer

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// tlsPath is the user-space TLS path (Kafka's SSL listeners): every byte
// of a response, framing and records, goes through crypto/tls on the
// connection's thread. Spans are pread(2) a chunk at a time into a buffer
// (1 copy into user memory), sealed by the TLS record layer into its own
// output buffer (a transforming copy in user memory the probes cannot
// see), and written to the socket one TLS record (at most 16 KiB of
// plaintext) per write(2) (1 copy from user memory): 2 kernel copies per
// byte, as read, plus the encryption. Data that must change cannot skip
// the copy: no by-reference path can serve a TLS listener without the
// kernel's TLS ULP (kTLS).
type tlsPath struct {
	lg     ledger
	chunk  int
	buf    []byte
	fc     *fdConn
	conn   *tls.Conn
	closed bool
}

// The ledger's BytesSent are the ciphertext bytes on the socket (TLS
// records: plaintext plus 5-byte headers and 16-byte tags, and the
// handshake); SpanBytes the plaintext span bytes; Send returns the
// plaintext bytes of its parts.
//
// NewTLS returns the tls path serving the TLS server side of sock (a
// connected, blocking TCP socket) with cfg. The handshake runs on the
// first Read or Send, on the calling thread; its syscalls are in the
// ledger. Requests are read with the returned path's Read (TLSReader).
func NewTLS(sock int, cfg *tls.Config, opts Options) (Path, error) {
	if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil) {
		return nil, errors.New("transfer path tls: no server certificate (give the listener a certificate and key)")
	}
	if opts.Chunk < 0 || opts.Chunk > MaxChunk {
		return nil, fmt.Errorf("transfer path tls: chunk %d bytes out of range (use 1..%d, or 0 for the default %d)", opts.Chunk, MaxChunk, DefaultChunk)
	}
	p := &tlsPath{chunk: opts.chunk(), buf: make([]byte, opts.chunk())}
	p.lg.init(p.chunk)
	p.fc = &fdConn{fd: sock, lg: &p.lg}
	p.conn = tls.Server(p.fc, cfg)
	return p, nil
}

// TLSReader is implemented by paths that own the connection's read side
// too (tls): the server reads requests through it instead of read(2).
type TLSReader interface {
	// Read reads decrypted request bytes. A socket receive timeout
	// (SO_RCVTIMEO) returns unix.EAGAIN, as read(2) would; the end of the
	// stream returns 0, nil.
	Read(b []byte) (int, error)
}

func (p *tlsPath) Name() string   { return "tls" }
func (p *tlsPath) Ledger() Ledger { return p.lg.snapshot() }

// Close releases the buffer; the socket belongs to the caller, so no
// close_notify is sent (the connection is going away anyway).
func (p *tlsPath) Close() error { p.closed, p.buf = true, nil; return nil }

func (p *tlsPath) Read(b []byte) (int, error) {
	n, err := p.conn.Read(b)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return n, unix.EAGAIN
	case errors.Is(err, io.EOF) && n == 0:
		return 0, nil
	case err != nil && n > 0:
		return n, nil // the error comes back on the next Read
	}
	return n, err
}

func (p *tlsPath) Send(_ int, parts []Part) (int64, error) {
	if p.closed {
		return 0, errors.New("tls path: Send after Close")
	}
	var total int64
	for i, part := range parts {
		if len(part.Bytes) > 0 {
			n, err := p.conn.Write(part.Bytes)
			total += int64(n)
			if err != nil {
				return total, fmt.Errorf("tls write of part %d (%d bytes): %w", i, len(part.Bytes), err)
			}
			continue
		}
		n, err := p.span(part.Span)
		total += n
		if err != nil {
			return total, fmt.Errorf("span %d (fd %d, off %d, len %d): %w", i, part.Span.Fd, part.Span.Off, part.Span.Len, err)
		}
	}
	return total, nil
}

// span preads the span a chunk at a time and writes it through TLS.
func (p *tlsPath) span(s Span) (int64, error) {
	return preadChunks(s, p.buf, &p.lg, func(b []byte) (int64, error) {
		w, err := p.conn.Write(b)
		p.lg.spanBytes.Add(uint64(w))
		if err != nil {
			return int64(w), fmt.Errorf("tls write %d bytes: %w", len(b), err)
		}
		return int64(w), nil
	})
}

// fdConn is a net.Conn over a blocking socket fd for crypto/tls: plain
// read(2) and write(2) on the calling thread (no Go poller), counted in
// the path's ledger. Deadlines are the socket's own SO_RCVTIMEO/SNDTIMEO;
// an expired one is a timeout error, as net.Conn's are.
type fdConn struct {
	fd int
	lg *ledger
}

// timeoutError is a socket timeout (EAGAIN on a blocking socket).
type timeoutError struct{}

func (timeoutError) Error() string   { return "socket timeout: " + os.ErrDeadlineExceeded.Error() }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (c *fdConn) Read(b []byte) (int, error) {
	for {
		c.lg.call(scRead)
		n, err := unix.Read(c.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, timeoutError{}
		case err != nil:
			return 0, fmt.Errorf("read from socket %d: %w", c.fd, err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes one TLS record's ciphertext, retrying short writes: these
// are the bytes on the socket (BytesSent); tlsPath counts the plaintext
// span bytes itself.
func (c *fdConn) Write(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		c.lg.call(scWrite)
		n, err := unix.Write(c.fd, b[total:])
		if n > 0 {
			total += n
			c.lg.sent(int64(n), false)
		}
		if err := settle(c.fd, int64(max(n, 0)), err, c.lg, errWroteNothing); err != nil {
			return total, fmt.Errorf("write %d bytes to socket %d: %w", len(b)-total, c.fd, err)
		}
	}
	return total, nil
}

func (c *fdConn) Close() error                       { return nil } // the server owns the fd
func (c *fdConn) LocalAddr() net.Addr                { return fdAddr{} }
func (c *fdConn) RemoteAddr() net.Addr               { return fdAddr{} }
func (c *fdConn) SetDeadline(t time.Time) error      { return nil }
func (c *fdConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fdConn) SetWriteDeadline(t time.Time) error { return nil }

type fdAddr struct{}

func (fdAddr) Network() string { return "tcp" }
func (fdAddr) String() string  { return "fd" }

// FDConn is a net.Conn over a connected, blocking socket fd that reads and
// writes with plain read(2) and write(2) on the calling thread, for a TLS
// client on a locked thread (a consumer in a measurement) to wrap with
// crypto/tls. Close does not close fd.
func FDConn(fd int) net.Conn { return &fdConn{fd: fd, lg: &ledger{}} }
