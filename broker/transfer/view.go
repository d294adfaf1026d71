package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Viewer is a path that sees the record bytes it serves (read, mmap): a
// broker feature that needs their content, such as a tag filter, asks it
// for a span's bytes and sends what it made of them as in-memory parts.
// The by-reference paths (sendfile, splice, zerocopy) are not Viewers:
// they never bring the bytes into user space.
type Viewer interface {
	// View returns the bytes of s, valid until the next View, Send or
	// Close. The read path preads them (one pread64 per chunk, counted in
	// its ledger); the mmap path returns a slice of its mapping, so only
	// the pages the caller touches are faulted in.
	View(s Span) ([]byte, error)
}

// View preads s into the path's view buffer, chunk by chunk.
func (p *readPath) View(s Span) ([]byte, error) {
	if p.buf == nil {
		return nil, fmt.Errorf("read path: View after Close")
	}
	if s.Len < 0 || s.Len > 1<<31 {
		return nil, fmt.Errorf("read path: view of %d bytes out of range", s.Len)
	}
	if int64(cap(p.view)) < s.Len {
		p.view = make([]byte, s.Len)
	}
	v := p.view[:s.Len]
	for done := int64(0); done < s.Len; {
		want := min(int64(len(p.buf)), s.Len-done)
		p.lg.call(scPread64)
		n, err := unix.Pread(s.Fd, v[done:done+want], s.Off+done)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pread %d bytes at %d: %w", want, s.Off+done, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("pread at %d: %w", s.Off+done, errShortSpan)
		}
		done += int64(n)
	}
	return v, nil
}

// View returns s as a slice of the segment's mapping.
func (p *mmapPath) View(s Span) ([]byte, error) {
	if p.closed {
		return nil, fmt.Errorf("mmap path: View after Close")
	}
	m, err := p.cache.get(s.Fd, s.Off+s.Len)
	if err != nil {
		return nil, err
	}
	return m.data[s.Off : s.Off+s.Len], nil
}
