package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// indexEntrySize is one sparse index entry: offset relative to the segment
// base (uint32) and byte position of that batch's start (uint32).
const indexEntrySize = 8

// segment is one .log file and its .index. Fields marked (mu) change only
// under both Partition.appendMu and Partition.mu and are read under either;
// fields marked (append) belong to the appender.
type segment struct {
	base    int64
	logPath string
	idxPath string
	log     *os.File
	idxFile *os.File
	idx     []byte // shared mapping of the index file, len = capacity

	size  int64 // (mu) bytes of whole, committed batches
	next  int64 // (mu) offset after the last batch
	maxTs int64 // (mu) largest batch max timestamp, -1 if none
	idxN  int   // (mu) index entries published to readers

	idxW int // (append) index entries written, published as idxN

	sinceIdx int64  // (append) bytes appended since the last index entry
	data     []byte // (append) ProduceMmap: writable mapping of the preallocated file
	sealed   bool   // (append) no longer the active segment

	refs atomic.Int32 // the partition's reference plus one per outstanding read

	cold closedFiles // what closeFiles released, while the partition hibernates (log == nil)
}

func segmentName(base int64, ext string) string { return fmt.Sprintf("%020d%s", base, ext) }

// createSegment makes an empty active segment at base in dir.
func createSegment(dir string, base int64, cfg *Config, minCap int64) (*segment, error) {
	s := &segment{base: base, next: base, maxTs: -1,
		logPath: filepath.Join(dir, segmentName(base, ".log")),
		idxPath: filepath.Join(dir, segmentName(base, ".index"))}
	var err error
	s.log, err = os.OpenFile(s.logPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment %s: %w (check that the data directory is writable)", s.logPath, err)
	}
	s.refs.Store(1)
	if err := s.activate(cfg, minCap, true); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// openSegment opens an existing segment's files without validating them.
func openSegment(dir string, base int64) (*segment, error) {
	s := &segment{base: base, next: base, maxTs: -1,
		logPath: filepath.Join(dir, segmentName(base, ".log")),
		idxPath: filepath.Join(dir, segmentName(base, ".index"))}
	var err error
	s.log, err = os.OpenFile(s.logPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w (check permissions on the data directory)", s.logPath, err)
	}
	s.refs.Store(1)
	return s, nil
}

// mapIndex (re)opens the index file with capacity bytes and maps it;
// truncate empties it first.
func (s *segment) mapIndex(capacity int64, truncate bool) error {
	if s.idx != nil {
		_ = unix.Munmap(s.idx)
		s.idx = nil
	}
	if s.idxFile == nil {
		flags := os.O_RDWR | os.O_CREATE
		if truncate {
			flags |= os.O_TRUNC
		}
		f, err := os.OpenFile(s.idxPath, flags, 0o644)
		if err != nil {
			return fmt.Errorf("open index %s: %w (check that the data directory is writable)", s.idxPath, err)
		}
		s.idxFile = f
	} else if truncate {
		if err := s.idxFile.Truncate(0); err != nil {
			return fmt.Errorf("truncate index %s: %w", s.idxPath, err)
		}
	}
	capacity -= capacity % indexEntrySize
	if err := s.idxFile.Truncate(capacity); err != nil {
		return fmt.Errorf("size index %s to %d bytes: %w (disk full?)", s.idxPath, capacity, err)
	}
	m, err := unix.Mmap(int(s.idxFile.Fd()), 0, int(capacity), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap index %s (%d bytes): %w", s.idxPath, capacity, err)
	}
	s.idx = m
	return nil
}

// activate prepares the segment for appends: a writable index of full
// capacity and, for ProduceMmap, a mapping of the preallocated log file.
// fresh says the index is empty (new segment or about to be rebuilt).
func (s *segment) activate(cfg *Config, minCap int64, fresh bool) error {
	capacity := max(cfg.SegmentBytes, minCap, s.size)
	if err := s.mapIndex(cfg.indexCapacity(capacity), fresh); err != nil {
		return err
	}
	if cfg.Produce == ProduceMmap {
		return s.mapData(capacity)
	}
	return nil
}

// mapData maps the log file for ProduceMmap appends, growing it to capacity.
func (s *segment) mapData(capacity int64) error {
	if s.data != nil {
		if int64(len(s.data)) >= capacity {
			return nil
		}
		_ = unix.Munmap(s.data)
		s.data = nil
	}
	// Reserve the blocks (fallocate keeps the size at capacity): a store
	// into a mapped hole on a full disk would be a SIGBUS, this is an error.
	if err := unix.Fallocate(int(s.log.Fd()), 0, 0, capacity); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("preallocate segment %s to %d bytes: %w (disk full? free space or use --produce-path write)", s.logPath, capacity, err)
		}
		if err := s.log.Truncate(capacity); err != nil {
			return fmt.Errorf("size segment %s to %d bytes: %w (disk full?)", s.logPath, capacity, err)
		}
	}
	m, err := unix.Mmap(int(s.log.Fd()), 0, int(capacity), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap segment %s (%d bytes): %w", s.logPath, capacity, err)
	}
	s.data = m
	return nil
}

// seal ends the segment's active life: the data mapping goes and the log
// and index files are trimmed to their contents. With durable it also
// syncs them; a roll leaves that to the partition's background flush.
func (s *segment) seal(durable bool) error {
	if !s.sealed {
		if s.data != nil {
			_ = unix.Munmap(s.data)
			s.data = nil
		}
		if err := s.trim(); err != nil {
			return err
		}
		s.stampTime()
		s.sealed = true
	}
	if durable {
		return s.syncFiles()
	}
	return nil
}

// stampTime sets the log file's mtime to the segment's largest timestamp,
// Kafka's retention clock, so a later Open need not scan for it.
func (s *segment) stampTime() {
	if s.maxTs >= 0 {
		t := time.UnixMilli(s.maxTs)
		_ = os.Chtimes(s.logPath, t, t) // best effort: without it the age is the later write time
	}
}

// syncFiles forces the log and index to disk.
func (s *segment) syncFiles() error {
	if err := unix.Fdatasync(int(s.log.Fd())); err != nil {
		return fmt.Errorf("fdatasync segment %s: %w", s.logPath, err)
	}
	if s.idxFile != nil {
		if err := unix.Fdatasync(int(s.idxFile.Fd())); err != nil {
			return fmt.Errorf("fdatasync index %s: %w", s.idxPath, err)
		}
	}
	return nil
}

// trim cuts the log and index files to their used sizes (the index mapping
// stays valid for the entries in use).
func (s *segment) trim() error {
	if st, err := s.log.Stat(); err == nil && st.Size() != s.size {
		if err := s.log.Truncate(s.size); err != nil {
			return fmt.Errorf("trim segment %s to %d bytes: %w", s.logPath, s.size, err)
		}
	}
	if s.idxFile != nil {
		if err := s.idxFile.Truncate(int64(s.idxW) * indexEntrySize); err != nil {
			return fmt.Errorf("trim index %s: %w", s.idxPath, err)
		}
	}
	return nil
}

// acquire takes a reference; the caller must know the segment is live
// (it holds Partition.mu and found the segment in the list).
func (s *segment) acquire() { s.refs.Add(1) }

// unmapFiles unmaps the data and the index and closes the index file
// (release and closeFiles; the log file is theirs to close).
func (s *segment) unmapFiles() {
	if s.data != nil {
		_ = unix.Munmap(s.data)
		s.data = nil
	}
	if s.idx != nil {
		_ = unix.Munmap(s.idx)
		s.idx = nil
	}
	if s.idxFile != nil {
		_ = s.idxFile.Close()
		s.idxFile = nil
	}
}

// release drops a reference; the last one unmaps and closes the files.
func (s *segment) release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	s.unmapFiles()
	if s.log != nil { // nil while hibernating
		_ = s.log.Close()
	}
}

// entry returns index entry i.
func (s *segment) entry(i int) (rel, pos uint32) {
	e := s.idx[i*indexEntrySize:]
	return binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
}

// indexFull reports whether n more entries would not fit.
func (s *segment) indexFull(n int) bool {
	return (s.idxW+n)*indexEntrySize > len(s.idx)
}

// addIndex records that the batch at offset off starts at pos if the
// interval has passed; call once per batch, in order, before counting its
// bytes with sinceIdx.
func (s *segment) addIndex(off, pos int64, interval int64, batchSize int64) {
	if (s.idxW == 0 || s.sinceIdx >= interval) && (s.idxW+1)*indexEntrySize <= len(s.idx) {
		e := s.idx[s.idxW*indexEntrySize:]
		binary.BigEndian.PutUint32(e, uint32(off-s.base))
		binary.BigEndian.PutUint32(e[4:], uint32(pos))
		s.idxW++ // published to readers as idxN, with size, under mu
		s.sinceIdx = 0
	}
	s.sinceIdx += batchSize
}

// lookup returns the position of the last indexed batch starting at or
// before offset (0 if none), from the first n entries.
func (s *segment) lookup(offset int64, n int) int64 {
	_, pos := s.lookupEntry(offset, n)
	return pos
}

// lookupEntry is lookup that also returns the indexed batch's base offset.
func (s *segment) lookupEntry(offset int64, n int) (base, pos int64) {
	rel := offset - s.base
	lo, hi := 0, n // find the first entry with rel > target
	for lo < hi {
		m := (lo + hi) / 2
		if r, _ := s.entry(m); int64(r) <= rel {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return s.base, 0
	}
	r, p := s.entry(lo - 1)
	return s.base + int64(r), int64(p)
}

// lookupPos returns the largest indexed batch position <= limit.
func (s *segment) lookupPos(limit int64, n int) int64 {
	lo, hi := 0, n
	for lo < hi {
		m := (lo + hi) / 2
		if _, p := s.entry(m); int64(p) <= limit {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return 0
	}
	_, p := s.entry(lo - 1)
	return int64(p)
}

// readHeader reads the batch header at pos (n bytes of it).
func (s *segment) readHeader(pos int64, buf []byte) (header, error) {
	if _, err := s.log.ReadAt(buf[:batchHeaderSize], pos); err != nil {
		return header{}, fmt.Errorf("read batch header at position %d of %s: %w", pos, s.logPath, err)
	}
	return parseHeader(buf), nil
}

// scanResult is what a recovery scan found.
type scanResult struct {
	validEnd int64 // position after the last good batch
	next     int64 // offset after the last good batch
	maxTs    int64
	torn     bool   // bytes after validEnd were not a good batch
	why      string // what was wrong with them, when torn
	zero     bool   // they were all zero (preallocated space, no records)
}

// scan maps the file and checks every batch from position 0 (length,
// magic, contiguous offsets, CRC-32C), rebuilding the index when
// rebuildIndex is set and calling fn for each good batch header.
func (s *segment) scan(fileSize int64, cfg *Config, rebuildIndex bool, fn func(h header)) (scanResult, error) {
	r := scanResult{next: s.base, maxTs: -1}
	if rebuildIndex {
		s.idxN, s.idxW, s.sinceIdx = 0, 0, 0
	}
	if fileSize == 0 {
		return r, nil
	}
	m, err := unix.Mmap(int(s.log.Fd()), 0, int(fileSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return r, fmt.Errorf("mmap segment %s for recovery: %w", s.logPath, err)
	}
	defer func() { _ = unix.Munmap(m) }()
	_ = unix.Madvise(m, unix.MADV_SEQUENTIAL)
	pos := int64(0)
	for pos < fileSize {
		avail := fileSize - pos
		if avail < batchHeaderSize {
			r.why, r.zero = tornReason(m[pos:], header{}, r.next, false)
			r.torn = true
			break
		}
		h := parseHeader(m[pos:])
		if !h.plausible(r.next, avail) ||
			crc32.Checksum(m[pos+posAttributes:pos+h.size], castagnoli) != binary.BigEndian.Uint32(m[pos+posCRC:]) {
			r.why, r.zero = tornReason(m[pos:], h, r.next, true)
			r.torn = true
			break
		}
		if rebuildIndex {
			s.addIndex(h.baseOffset, pos, cfg.IndexIntervalBytes, h.size)
		}
		if fn != nil {
			fn(h)
		}
		r.maxTs = max(r.maxTs, h.maxTs)
		r.next = h.baseOffset + int64(h.lastDelta) + 1
		pos += h.size
	}
	r.validEnd = pos
	if rebuildIndex {
		s.idxN = s.idxW
	}
	return r, nil
}

// checkIndex decides whether a sealed segment's index can be trusted
// without a scan: entries strictly increasing from (0,0), sampled entries
// pointing at batch headers with the right offsets, and the headers after
// the last entry chaining exactly to the end of the file. On success it
// sets size, next, maxTs and idxN.
func (s *segment) checkIndex(fileSize int64) bool {
	st, err := os.Stat(s.idxPath)
	if err != nil || fileSize == 0 || st.Size() < indexEntrySize || st.Size()%indexEntrySize != 0 {
		return false
	}
	f, err := os.OpenFile(s.idxPath, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return false
	}
	s.idxFile, s.idx = f, m
	n := 0
	var prevRel, prevPos uint32
	for i := 0; i < len(m)/indexEntrySize; i++ {
		rel, pos := s.entry(i)
		if (i == 0 && (rel != 0 || pos != 0)) || (i > 0 && (rel <= prevRel || pos <= prevPos)) || int64(pos) >= fileSize {
			break
		}
		prevRel, prevPos, n = rel, pos, i+1
	}
	ok := n > 0
	buf := make([]byte, batchHeaderSize)
	for k := 0; ok && k < 16 && n > 1; k++ { // sampled entries
		rel, pos := s.entry(k * (n - 1) / 15)
		h, err := s.readHeader(int64(pos), buf)
		ok = err == nil && h.plausible(s.base+int64(rel), fileSize-int64(pos))
	}
	var next, maxTs int64 = 0, -1
	if ok {
		rel, p := s.entry(n - 1)
		pos, want := int64(p), s.base+int64(rel)
		for pos < fileSize {
			h, err := s.readHeader(pos, buf)
			if err != nil || !h.plausible(want, fileSize-pos) {
				ok = false
				break
			}
			want = h.baseOffset + int64(h.lastDelta) + 1
			maxTs = max(maxTs, h.maxTs)
			pos += h.size
		}
		next = want
	}
	if !ok {
		_ = unix.Munmap(m)
		_ = f.Close()
		s.idxFile, s.idx = nil, nil
		return false
	}
	// The tail walk sees only the last batches; seal stamped the file's
	// mtime with the segment's largest timestamp (an unstamped file's mtime
	// is its last write, later still), so take the larger: retention and
	// OffsetForTime stay correct with out-of-order producer timestamps.
	if st, err := s.log.Stat(); err == nil {
		maxTs = max(maxTs, st.ModTime().UnixMilli())
	}
	s.size, s.next, s.maxTs, s.idxN, s.idxW = fileSize, next, maxTs, n, n
	_, lastPos := s.entry(n - 1)
	s.sinceIdx = fileSize - int64(lastPos)
	return true
}

// age is how old the segment's newest batch is, by its largest timestamp,
// or by the file's modification time if no batch carried a timestamp.
func (s *segment) age(now time.Time) time.Duration {
	if s.maxTs >= 0 {
		return now.Sub(time.UnixMilli(s.maxTs))
	}
	st, err := os.Stat(s.logPath) // the file may be closed while its partition hibernates
	if err != nil {
		return 0
	}
	return now.Sub(st.ModTime())
}

// remove unlinks the segment's files; open descriptors stay readable.
func (s *segment) remove() error {
	err := os.Remove(s.logPath)
	if e := os.Remove(s.idxPath); e != nil && !errors.Is(e, os.ErrNotExist) && err == nil {
		err = e
	}
	return err
}

// forEach calls fn for every batch header from the batch at position from
// to the end of the committed data, through a temporary read-only mapping
// (headers only, no CRC: used to replay producer state over trusted data).
func (s *segment) forEach(from int64, fn func(h header)) error {
	if s.size == 0 || from >= s.size {
		return nil
	}
	m, err := unix.Mmap(int(s.log.Fd()), 0, int(s.size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap segment %s to replay producer state: %w", s.logPath, err)
	}
	defer func() { _ = unix.Munmap(m) }()
	for pos := from; pos+batchHeaderSize <= s.size; {
		h := parseHeader(m[pos:])
		if h.size < batchHeaderSize {
			return fmt.Errorf("segment %s: batch at position %d has length %d; delete the .index file to force a rescan", s.logPath, pos, h.size)
		}
		fn(h)
		pos += h.size
	}
	return nil
}
