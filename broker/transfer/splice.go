package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// splicePath moves spans segment -> pipe -> socket with splice(2): pages go
// by reference through a pipe sized to the chunk, two syscalls per chunk.
type splicePath struct {
	pathBase
	chunkPipe
	closed bool
}

func newSplicePath(opts Options) *splicePath {
	p := &splicePath{}
	p.init(opts)
	p.initPipe("splice", p.chunk, &p.lg)
	return p
}

func (p *splicePath) Name() string { return "splice" }

func (p *splicePath) Close() error {
	p.closed = true
	return p.closePipe()
}

func (p *splicePath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("splice path: Send after Close")
	}
	if p.pr < 0 {
		if err := p.openPipe(); err != nil {
			return 0, err
		}
	}
	n, err := sendParts(sock, parts, &p.lg, p.ck, p.span)
	if err != nil {
		// The pipe may hold bytes that never reached the socket: start
		// the next Send with an empty one.
		p.closePipe()
	}
	return n, err
}

func (p *splicePath) span(sock int, s Span, last bool) (int64, error) {
	var total int64
	off, end := s.Off, s.Off+s.Len
	for off < end {
		want := int(min(int64(p.step), end-off))
		p.lg.call(scSplice)
		in, err := unix.Splice(s.Fd, &off, p.pw, nil, want, unix.SPLICE_F_MOVE|unix.SPLICE_F_MORE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("splice %d bytes at %d from segment into pipe: %w", want, off, err)
		}
		if in == 0 {
			return total, fmt.Errorf("splice at %d: %w", off, errShortSpan)
		}
		// Drain the pipe into the socket. SPLICE_F_MORE (MSG_MORE) on all
		// but the response's final bytes, so TCP does not push partial
		// segments; the final splice pushes.
		for left := in; left > 0; {
			flags := unix.SPLICE_F_MOVE
			if !last || off < end {
				flags |= unix.SPLICE_F_MORE
			}
			p.lg.call(scSplice)
			out, err := unix.Splice(p.pr, nil, sock, nil, int(left), flags)
			if out > 0 {
				left -= out
				total += out
				p.lg.sent(out, true)
			}
			if err := settle(sock, out, err, &p.lg, errWroteNothing); err != nil {
				return total, fmt.Errorf("splice %d bytes from pipe to socket %d: %w", left, sock, err)
			}
		}
	}
	return total, nil
}
