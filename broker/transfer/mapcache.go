package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// maxMappings bounds how many segment mappings one path keeps alive.
const maxMappings = 8

// fileKey identifies a file independently of the descriptor number, so a
// reused fd never serves a stale mapping.
type fileKey struct {
	dev, ino uint64
}

// mapping is a read-only MAP_SHARED view of the first size bytes of a file.
type mapping struct {
	key     fileKey
	data    []byte
	lastUse uint64 // cache clock of the last Send that used it
	deleted bool   // the file had no links left at the last fstat
	zc      bool   // zerocopy sends referenced it
	lastSeq uint64 // zerocopy: last send sequence that referenced it
}

// mapCache keeps mappings across Sends, keyed by (dev, ino). It maps only
// up to the size fstat reports, so a growing active segment never SIGBUSes,
// and remaps when a span reaches past the mapped length. busy says whether
// a mapping may still be referenced by the kernel (zerocopy); busy mappings
// are retired instead of unmapped and released later.
type mapCache struct {
	lg      *ledger
	busy    func(*mapping) bool
	live    []*mapping
	retired []*mapping
	clock   uint64
}

// begin marks the start of a Send, for least-recently-used eviction.
func (c *mapCache) begin() { c.clock++ }

// sendMapped maps span s and sends it in pieces of at most chunk bytes,
// each starting where the bytes sent so far end: send moves what it can of
// b (0 to retry the same piece) and returns the bytes it sent.
func (c *mapCache) sendMapped(s Span, chunk int, send func(m *mapping, b []byte) (int64, error)) (int64, error) {
	m, err := c.get(s.Fd, s.Off+s.Len)
	if err != nil {
		return 0, err
	}
	var total int64
	for off, end := s.Off, s.Off+s.Len; off < end; {
		n, err := send(m, m.data[off:off+min(int64(chunk), end-off)])
		total += n
		off += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// get returns a mapping of fd that covers [0, end).
func (c *mapCache) get(fd int, end int64) (*mapping, error) {
	var st unix.Stat_t
	c.lg.call(scFstat)
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat segment fd %d: %w", fd, err)
	}
	key := fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	idx := -1
	for i, m := range c.live {
		if m.key == key {
			idx = i
			break
		}
	}
	if idx >= 0 && int64(len(c.live[idx].data)) >= end {
		m := c.live[idx]
		m.lastUse = c.clock
		m.deleted = st.Nlink == 0
		return m, nil
	}
	if st.Size < end {
		return nil, fmt.Errorf("segment fd %d is %d bytes, span ends at %d: %w", fd, st.Size, end, errShortSpan)
	}
	c.lg.call(scMmap)
	data, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes of segment fd %d: %w (check vm.max_map_count and the address-space limit)", st.Size, fd, err)
	}
	m := &mapping{key: key, data: data, lastUse: c.clock, deleted: st.Nlink == 0}
	if idx >= 0 {
		// The file grew past the old mapping: replace it.
		c.drop(c.live[idx])
		c.live[idx] = m
	} else {
		c.live = append(c.live, m)
	}
	c.evict()
	return m, nil
}

// evict drops least-recently-used mappings beyond maxMappings, never one
// used by the current Send.
func (c *mapCache) evict() {
	for len(c.live) > maxMappings {
		oldest := -1
		for i, m := range c.live {
			if m.lastUse == c.clock {
				continue
			}
			if oldest < 0 || m.lastUse < c.live[oldest].lastUse {
				oldest = i
			}
		}
		if oldest < 0 {
			return
		}
		c.drop(c.live[oldest])
		c.live = append(c.live[:oldest], c.live[oldest+1:]...)
	}
}

// drop unmaps m now, or retires it until the kernel is done with it.
func (c *mapCache) drop(m *mapping) {
	if c.busy != nil && c.busy(m) {
		c.retired = append(c.retired, m)
		return
	}
	c.unmap(m)
}

func (c *mapCache) unmap(m *mapping) {
	if m.data == nil {
		return
	}
	c.lg.call(scMunmap)
	if err := unix.Munmap(m.data); err != nil {
		c.lg.note(fmt.Sprintf("munmap of a %d-byte segment mapping failed: %v", len(m.data), err))
	}
	m.data = nil
}

// end runs after a Send: mappings of deleted files are let go (their disk
// space is held until unmapped) and retired mappings no longer busy are
// unmapped.
func (c *mapCache) end() {
	kept := c.live[:0]
	for _, m := range c.live {
		if m.deleted {
			c.drop(m)
			continue
		}
		kept = append(kept, m)
	}
	clear(c.live[len(kept):])
	c.live = kept
	c.sweep()
}

// sweep unmaps retired mappings the kernel no longer references.
func (c *mapCache) sweep() {
	kept := c.retired[:0]
	for _, m := range c.retired {
		if c.busy != nil && c.busy(m) {
			kept = append(kept, m)
			continue
		}
		c.unmap(m)
	}
	clear(c.retired[len(kept):])
	c.retired = kept
}

// closeAll unmaps everything not busy and returns how many stay mapped.
func (c *mapCache) closeAll() int {
	for _, m := range c.live {
		c.drop(m)
	}
	c.live = nil
	c.sweep()
	return len(c.retired)
}
