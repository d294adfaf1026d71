package log

import (
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxOpenSegmentFiles is the default cap on the descriptors that
// segments hold open (a .log and an .index each, with their mappings):
// beyond it the least recently used partitions release theirs, and reopen
// them on their next read or append.
const DefaultMaxOpenSegmentFiles = 2048

// closedFiles remembers what a hibernated segment had mapped, so reopen
// restores exactly that.
type closedFiles struct {
	idxLen, dataLen int
	hadIdx          bool
}

// closeFiles releases the segment's descriptors and mappings, keeping its
// metadata. Called with the partition's appendMu and mu held, when no read
// holds the segment.
func (s *segment) closeFiles() {
	s.cold = closedFiles{idxLen: len(s.idx), dataLen: len(s.data), hadIdx: s.idxFile != nil}
	s.unmapFiles()
	_ = s.log.Close()
	s.log = nil
}

// reopen restores what closeFiles released.
func (s *segment) reopen() (err error) {
	defer func() {
		if err != nil {
			s.closeFiles()
		}
	}()
	if s.log, err = os.OpenFile(s.logPath, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("reopen segment %s: %w", s.logPath, err)
	}
	c := s.cold
	if c.hadIdx {
		if s.idxFile, err = os.OpenFile(s.idxPath, os.O_RDWR, 0); err != nil {
			return fmt.Errorf("reopen index %s: %w", s.idxPath, err)
		}
	}
	if c.idxLen > 0 {
		if s.idx, err = unix.Mmap(int(s.idxFile.Fd()), 0, c.idxLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("remap index %s: %w", s.idxPath, err)
		}
	}
	if c.dataLen > 0 {
		if s.data, err = unix.Mmap(int(s.log.Fd()), 0, c.dataLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("remap segment %s: %w", s.logPath, err)
		}
	}
	return nil
}

// hibernate releases every segment's files if the partition is idle: no
// append or read in progress, no read result outstanding. With
// FsyncInterval the active segment is synced first, so the interval's
// promise holds for what was written before. It reports whether it did.
func (p *Partition) hibernate() bool {
	if !p.appendMu.TryLock() {
		return false
	}
	defer p.appendMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.cold.Load() || p.down {
		return false
	}
	for _, s := range p.segs {
		if s.refs.Load() != 1 {
			return false
		}
	}
	if act := p.segs[len(p.segs)-1]; p.cfg.Fsync == FsyncInterval && act.log != nil {
		if err := act.syncFiles(); err != nil {
			p.failed.Store(&failure{err: err})
			return false
		}
	}
	for _, s := range p.segs {
		s.closeFiles()
	}
	p.cold.Store(true)
	return true
}

// wakeLocked reopens a hibernated partition's files. Called with appendMu.
func (p *Partition) wakeLocked() error {
	p.lastUse.Store(time.Now().UnixNano())
	if !p.cold.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cold.Load() || p.closed {
		return nil
	}
	for i, s := range p.segs {
		if err := s.reopen(); err != nil {
			for _, o := range p.segs[:i] {
				o.closeFiles()
			}
			return fmt.Errorf("reopen %s: %w (raise the open file limit, ulimit -n, or lower --max-open-segments)", p.name(), err)
		}
	}
	p.cold.Store(false)
	return nil
}

// rlockWarm takes p.mu for reading with the partition's files open: a
// hibernated partition is woken first, and hibernate (which needs p.mu for
// writing) cannot close them until the caller unlocks.
func (p *Partition) rlockWarm() error {
	p.lastUse.Store(time.Now().UnixNano())
	for {
		if p.cold.Load() {
			p.appendMu.Lock()
			err := p.wakeLocked()
			p.appendMu.Unlock()
			if err != nil {
				return err
			}
		}
		p.mu.RLock()
		if !p.cold.Load() || p.closed {
			return nil
		}
		p.mu.RUnlock()
	}
}

// openFiles is the number of descriptors the partition's segments hold.
func (p *Partition) openFiles() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed || p.cold.Load() {
		return 0
	}
	n := 0
	for _, s := range p.segs {
		n++ // .log
		if s.idxFile != nil {
			n++
		}
	}
	return n
}

// enforceOpenCap hibernates the least recently used partitions until the
// descriptors segments hold are within Config.MaxOpenSegmentFiles.
func (s *Store) enforceOpenCap() {
	limit := s.cfg.MaxOpenSegmentFiles
	if limit < 0 {
		return
	}
	type warm struct {
		p     *Partition
		files int
		used  int64
	}
	var ws []warm
	total := 0
	for _, p := range s.partitions() {
		if n := p.openFiles(); n > 0 {
			ws = append(ws, warm{p, n, p.lastUse.Load()})
			total += n
		}
	}
	if total <= limit {
		return
	}
	slices.SortFunc(ws, func(a, b warm) int { return int(min(max(a.used-b.used, -1), 1)) })
	for _, w := range ws {
		if total <= limit {
			return
		}
		if w.p.hibernate() {
			total -= w.files
		}
	}
}
