package log

import (
	"errors"
	"fmt"
)

// KeepAll exempts the partition from retention: its owner decides what it
// no longer needs and deletes it with DeleteBefore. The group coordinator
// does so with __consumer_offsets, where age or size says nothing about
// whether a group's last commit is still needed.
func (p *Partition) KeepAll() { p.keepAll.Store(true) }

// DeleteBefore deletes the oldest segments as long as the next one starts
// at or below offset, so every record at or above offset stays; the
// active segment always stays. Files of deleted segments stay open until
// every ReadResult using them is released. It returns how many segments
// were deleted.
func (p *Partition) DeleteBefore(offset int64) (int, error) {
	p.appendMu.Lock() // the appender reads segs without mu
	defer p.appendMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nil
	}
	n := 0
	var errs []error
	for len(p.segs) > 1 && p.segs[1].base <= offset {
		s := p.segs[0]
		p.segs = p.segs[1:]
		p.start = p.segs[0].base
		if err := s.remove(); err != nil {
			errs = append(errs, fmt.Errorf("delete %s before offset %d: %w", s.logPath, offset, err))
		}
		s.release()
		n++
	}
	return n, errors.Join(errs...)
}
