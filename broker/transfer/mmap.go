package transfer

import (
	"fmt"
)

// mmapPath writes to the socket straight from a read-only mapping of the
// segment, as RocketMQ serves its CommitLog: one write(2) per chunk and one
// CPU copy per byte; page faults take the place of read(2).
type mmapPath struct {
	pathBase
	cache  mapCache
	closed bool
}

func newMmapPath(opts Options) *mmapPath {
	p := &mmapPath{}
	p.init(opts)
	p.cache.lg = &p.lg
	return p
}

func (p *mmapPath) Name() string { return "mmap" }

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
	return p.cache.sendMapped(s, p.chunk, func(_ *mapping, b []byte) (int64, error) {
		return writeAll(sock, b, true, &p.lg)
	})
}
