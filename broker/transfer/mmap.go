package transfer

import (
	"fmt"
)

// mmapPath writes to the socket straight from a read-only mapping of the
// segment, as RocketMQ serves its CommitLog: one write(2) per chunk and one
// CPU copy per byte; page faults take the place of read(2).
type mmapPath struct {
	lg     ledger
	ck     corker
	chunk  int
	cache  mapCache
	closed bool
}

func newMmapPath(opts Options) *mmapPath {
	p := &mmapPath{chunk: opts.chunk()}
	p.lg.init(p.chunk)
	p.ck = corker{off: opts.NoCork, chunk: opts.chunk()}
	p.cache.lg = &p.lg
	return p
}

func (p *mmapPath) Name() string   { return "mmap" }
func (p *mmapPath) Ledger() Ledger { return p.lg.snapshot() }

func (p *mmapPath) Close() error {
	p.closed = true
	p.cache.closeAll()
	return nil
}

func (p *mmapPath) Send(sock int, parts []Part) (int64, error) {
	if p.closed {
		return 0, fmt.Errorf("mmap path: Send after Close")
	}
	p.cache.begin()
	n, err := sendParts(sock, parts, &p.lg, p.ck, p.span)
	p.cache.end()
	return n, err
}

func (p *mmapPath) span(sock int, s Span, _ bool) (int64, error) {
	m, err := p.cache.get(s.Fd, s.Off+s.Len)
	if err != nil {
		return 0, err
	}
	var total int64
	off, end := s.Off, s.Off+s.Len
	for off < end {
		n := min(int64(p.chunk), end-off)
		w, err := writeAll(sock, m.data[off:off+n], true, &p.lg)
		total += w
		if err != nil {
			return total, err
		}
		off += n
	}
	return total, nil
}
