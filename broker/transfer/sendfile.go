package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// sendfilePath moves spans with sendfile(2) in chunks, as Kafka does with
// FileChannel.transferTo: page-cache pages go to the socket by reference,
// one syscall per chunk.
type sendfilePath struct {
	pathBase
}

func newSendfilePath(opts Options) *sendfilePath {
	p := &sendfilePath{}
	p.init(opts)
	return p
}

func (p *sendfilePath) Name() string { return "sendfile" }
func (p *sendfilePath) Close() error { return nil }

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
		if err := settle(sock, int64(n), err, &p.lg, errShortSpan); err != nil {
			return total, fmt.Errorf("sendfile %d bytes at %d: %w", want, off, err)
		}
	}
	return total, nil
}
