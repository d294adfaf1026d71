package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// readPath is the classic copy loop: pread(2) a chunk of the segment into a
// reusable buffer, then write(2) it to the socket. Two CPU copies per byte,
// two syscalls per chunk. It never uses io.Copy or ReadFrom: Go would
// silently turn those into sendfile or splice.
type readPath struct {
	pathBase
	buf  []byte
	view []byte // View's buffer (view.go)
}

func newReadPath(opts Options) *readPath {
	p := &readPath{buf: make([]byte, opts.chunk())}
	p.init(opts)
	return p
}

func (p *readPath) Name() string { return "read" }
func (p *readPath) Close() error { p.buf, p.view = nil, nil; return nil }

func (p *readPath) Send(sock int, parts []Part) (int64, error) {
	if p.buf == nil {
		return 0, fmt.Errorf("read path: Send after Close")
	}
	return sendParts(sock, parts, &p.lg, p.ck, p.span)
}

func (p *readPath) span(sock int, s Span, _ bool) (int64, error) {
	return preadChunks(s, p.buf, &p.lg, func(b []byte) (int64, error) {
		return writeAll(sock, b, true, &p.lg)
	})
}

// preadChunks preads span s into buf a chunk at a time and hands each
// chunk to write, which sends all of it (the read path's write(2), the
// TLS path's encrypting writer). It returns the bytes written.
func preadChunks(s Span, buf []byte, lg *ledger, write func(b []byte) (int64, error)) (int64, error) {
	var total int64
	off, end := s.Off, s.Off+s.Len
	for off < end {
		want := min(int64(len(buf)), end-off)
		lg.call(scPread64)
		n, err := unix.Pread(s.Fd, buf[:want], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("pread %d bytes at %d: %w", want, off, err)
		}
		if n == 0 {
			return total, fmt.Errorf("pread at %d: %w", off, errShortSpan)
		}
		w, err := write(buf[:n])
		total += w
		if err != nil {
			return total, err
		}
		off += int64(n)
	}
	return total, nil
}
