package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sendfilePath moves spans with sendfile(2) in chunks, as Kafka does with
// FileChannel.transferTo: page-cache pages go to the socket by reference,
// one syscall per chunk.
type sendfilePath struct {
	lg    ledger
	ck    corker
	chunk int
}

func newSendfilePath(opts Options) *sendfilePath {
	p := &sendfilePath{chunk: opts.chunk()}
	p.lg.init(p.chunk)
	p.ck = corker{off: opts.NoCork, chunk: opts.chunk()}
	return p
}

func (p *sendfilePath) Name() string   { return "sendfile" }
func (p *sendfilePath) Ledger() Ledger { return p.lg.snapshot() }
func (p *sendfilePath) Close() error   { return nil }

func (p *sendfilePath) Send(sock int, parts []Part) (int64, error) {
	return sendParts(sock, parts, &p.lg, p.ck, p.span)
}

func (p *sendfilePath) span(sock int, s Span, _ bool) (int64, error) {
	var total int64
	off, end := s.Off, s.Off+s.Len
	for off < end {
		want := int(min(int64(p.chunk), end-off))
		p.lg.call(scSendfile)
		n, err := unix.Sendfile(sock, s.Fd, &off, want) // advances off by n
		if n > 0 {
			total += int64(n)
			p.lg.sent(int64(n), true)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if werr := waitWritable(sock, &p.lg); werr != nil {
				return total, werr
			}
			continue
		case err != nil:
			return total, fmt.Errorf("sendfile %d bytes at %d: %w", want, off, err)
		case n == 0:
			return total, fmt.Errorf("sendfile at %d: %w", off, errShortSpan)
		}
	}
	return total, nil
}
