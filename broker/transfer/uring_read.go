package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// uringPath is read+write through io_uring: IORING_OP_READ of a chunk of
// the segment into a buffer, linked to IORING_OP_SEND of that buffer
// (MSG_WAITALL: the kernel finishes short sends itself), up to
// uringChunks(chunk) chunks per chain and per io_uring_enter. Two CPU
// copies per byte, as read does, but one syscall per chain instead of two
// per chunk. The chain runs strictly in order, so one buffer serves it.
type uringPath struct {
	lg     ledger
	ck     corker
	core   uringCore
	chunk  int
	buf    []byte // anonymous mapping: the kernel writes into it
	closed bool
}

func newUringPath(opts Options) *uringPath {
	p := &uringPath{chunk: opts.chunk()}
	p.lg.init(p.chunk)
	p.ck = corker{off: opts.NoCork, chunk: opts.chunk()}
	p.core.lg = &p.lg
	return p
}

func (p *uringPath) Name() string   { return "uring" }
func (p *uringPath) Ledger() Ledger { return p.lg.snapshot() }

func (p *uringPath) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.core.close()
	if p.buf != nil {
		p.lg.call(scMunmap)
		unix.Munmap(p.buf)
		p.buf = nil
	}
	return err
}

func (p *uringPath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("uring path: Send after Close")
	}
	if err := p.core.open(); err != nil {
		return 0, fmt.Errorf("uring path: %w", err)
	}
	if p.buf == nil {
		p.lg.call(scMmap)
		b, err := unix.Mmap(-1, 0, p.chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return 0, fmt.Errorf("uring path: map a %d-byte buffer: %w", p.chunk, err)
		}
		p.buf = b
	}
	return sendParts(sock, parts, &p.lg, p.ck, p.span)
}

func (p *uringPath) span(sock int, s Span, _ bool) (int64, error) {
	end := s.Off + s.Len
	fill := func(off int64) int {
		k := 0
		for o := off; o < end && k < uringChunks(p.chunk); k++ {
			n := int(min(int64(p.chunk), end-o))
			sqe, ud := p.core.next(opRead)
			sqe.PrepRead(s.Fd, p.buf[:n], o, ud)
			sqe, ud = p.core.next(opSend)
			sqe.PrepSend(sock, p.buf[:n], unix.MSG_WAITALL, ud)
			o += int64(n)
		}
		return k
	}
	return p.core.chains(s.Off, end, "READ+SEND", fill, func(off int64, k int) (int64, int64, error) {
		sent, err := p.settle(sock, off, end, k)
		return sent, sent, err
	})
}

// settle walks a completed chain of k READ+SEND pairs from off and returns
// the bytes that reached the socket in order, stopping at the first pair
// that did not move its whole chunk (the rest was cancelled; the caller
// resumes). It fails on what a retry cannot fix.
func (p *uringPath) settle(sock int, off, end int64, k int) (int64, error) {
	var sent int64
	for i := 0; i < k; i++ {
		want := int32(min(int64(p.chunk), end-off-sent))
		rd, sd := p.core.res[2*i], p.core.res[2*i+1]
		if sd > 0 {
			sent += int64(sd)
			p.lg.sent(int64(sd), true)
		}
		if rd == want && sd == want {
			continue
		}
		switch {
		case rd == 0:
			return sent, fmt.Errorf("io_uring READ at %d: %w", off+sent, errShortSpan)
		case rd < 0 && rd != -int32(unix.ECANCELED) && rd != -int32(unix.EINTR) && rd != -int32(unix.EAGAIN):
			return sent, fmt.Errorf("io_uring READ %d bytes at %d: %w", want, off+sent, errno(rd))
		case sd == -int32(unix.EAGAIN):
			return sent, waitWritable(sock, &p.lg)
		case sd < 0 && sd != -int32(unix.ECANCELED) && sd != -int32(unix.EINTR):
			return sent, fmt.Errorf("io_uring SEND %d bytes to socket %d: %w", want, sock, errno(sd))
		}
		return sent, nil // short: resume after what was sent
	}
	return sent, nil
}
