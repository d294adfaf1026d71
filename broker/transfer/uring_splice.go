package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// uringSplicePath is splice through io_uring: IORING_OP_SPLICE segment ->
// pipe linked to IORING_OP_SPLICE pipe -> socket, up to uringChunks(chunk)
// chunks per chain and per io_uring_enter. Pages go by reference as with
// splice(2); the kernel runs SPLICE on its io-wq workers (iou-wrk
// threads), not on the submitting thread. The chain drains the pipe
// before refilling it, so a pipe of one chunk suffices.
type uringSplicePath struct {
	lg    ledger
	ck    corker
	core  uringCore
	chunk int
	chunkPipe
	closed bool
}

func newUringSplicePath(opts Options) *uringSplicePath {
	p := &uringSplicePath{chunk: opts.chunk()}
	p.lg.init(p.chunk)
	p.ck = corker{off: opts.NoCork, chunk: opts.chunk()}
	p.core.lg = &p.lg
	p.initPipe("uring-splice", p.chunk, &p.lg)
	return p
}

func (p *uringSplicePath) Name() string   { return "uring-splice" }
func (p *uringSplicePath) Ledger() Ledger { return p.lg.snapshot() }

func (p *uringSplicePath) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.core.close()
	if perr := p.closePipe(); err == nil {
		err = perr
	}
	return err
}

func (p *uringSplicePath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("uring-splice path: Send after Close")
	}
	if err := p.core.open(); err != nil {
		return 0, fmt.Errorf("uring-splice path: %w", err)
	}
	if p.pr < 0 {
		if err := p.openPipe(); err != nil {
			return 0, err
		}
	}
	n, err := sendParts(sock, parts, &p.lg, p.ck, p.span)
	if err != nil {
		p.closePipe() // it may hold bytes that never reached the socket
	}
	return n, err
}

func (p *uringSplicePath) span(sock int, s Span, last bool) (int64, error) {
	end := s.Off + s.Len
	fill := func(off int64) int {
		k := 0
		for o := off; o < end && k < uringChunks(p.step); k++ {
			n := int(min(int64(p.step), end-o))
			o += int64(n)
			flags := uint32(unix.SPLICE_F_MOVE)
			sqe, ud := p.core.next(opSplice)
			sqe.PrepSplice(s.Fd, o-int64(n), p.pw, -1, n, flags, ud)
			if !last || o < end {
				flags |= unix.SPLICE_F_MORE
			}
			sqe, ud = p.core.next(opSplice)
			sqe.PrepSplice(p.pr, -1, sock, -1, n, flags, ud)
		}
		return k
	}
	return p.core.chains(s.Off, end, "SPLICE", fill, func(off int64, k int) (int64, int64, error) {
		return p.settle(sock, off, end, k)
	})
}

// settle walks a completed chain of k SPLICE pairs: in is how far the
// file was consumed, sent how much reached the socket. At the first pair
// that did not move its whole step it drains what the pipe still holds
// (so in == sent again) and returns for the caller to resume.
func (p *uringSplicePath) settle(sock int, off, end int64, k int) (in, sent int64, err error) {
	for i := 0; i < k; i++ {
		want := int32(min(int64(p.step), end-off-in))
		fin, fout := p.core.res[2*i], p.core.res[2*i+1]
		if fin > 0 {
			in += int64(fin)
		}
		if fout > 0 {
			sent += int64(fout)
			p.lg.sent(int64(fout), true)
		}
		if fin == want && fout == want {
			continue
		}
		if err := p.drain(sock, in-sent); err != nil {
			return in, sent, err
		}
		sent = in
		switch {
		case fin == 0:
			return in, sent, fmt.Errorf("io_uring SPLICE at %d: %w", off+in, errShortSpan)
		case fin < 0 && fin != -int32(unix.ECANCELED) && fin != -int32(unix.EINTR) && fin != -int32(unix.EAGAIN):
			return in, sent, fmt.Errorf("io_uring SPLICE %d bytes at %d from segment into pipe: %w", want, off+in, errno(fin))
		case fout == -int32(unix.EAGAIN):
			return in, sent, waitWritable(sock, &p.lg)
		case fout < 0 && fout != -int32(unix.ECANCELED) && fout != -int32(unix.EINTR):
			return in, sent, fmt.Errorf("io_uring SPLICE %d bytes from pipe to socket %d: %w", want, sock, errno(fout))
		}
		return in, sent, nil
	}
	return in, sent, nil
}

// drain moves n bytes left in the pipe to the socket, one SPLICE per chain.
func (p *uringSplicePath) drain(sock int, n int64) error {
	for stall := 0; n > 0; stall++ {
		if stall > uringStall {
			return fmt.Errorf("io_uring SPLICE: pipe to socket %d stalled with %d bytes in the pipe", sock, n)
		}
		sqe, ud := p.core.next(opSplice)
		sqe.PrepSplice(p.pr, -1, sock, -1, int(n), unix.SPLICE_F_MOVE, ud)
		if err := p.core.run(); err != nil {
			return err
		}
		switch r := p.core.res[0]; {
		case r > 0:
			n -= int64(r)
			p.lg.sent(int64(r), true)
			stall = 0
		case r == -int32(unix.EAGAIN):
			if err := waitWritable(sock, &p.lg); err != nil {
				return err
			}
		case r == 0:
			return fmt.Errorf("io_uring SPLICE from pipe to socket %d moved 0 bytes with %d in the pipe", sock, n)
		case r != -int32(unix.EINTR) && r != -int32(unix.ECANCELED):
			return fmt.Errorf("io_uring SPLICE %d bytes from pipe to socket %d: %w", n, sock, errno(r))
		}
	}
	return nil
}
