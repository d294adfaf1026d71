package log

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Partition is one topic-partition's log. Appends are serialized; reads run
// concurrently with appends and with each other.
type Partition struct {
	topic string
	id    int32
	dir   string
	cfg   *Config

	appendMu  sync.Mutex
	producers map[int64]*producerState // (append)
	infos     []batchInfo              // (append) scratch
	pend      []pendingProducer        // (append) scratch
	down      bool                     // (append) closed or deleted
	flushing  chan struct{}            // (append) closed when the last roll's background flush is done
	failed    atomic.Pointer[failure]  // a sync failed: durability is lost
	cold      atomic.Bool              // hibernating: segment files closed (changes under appendMu and mu)
	lastUse   atomic.Int64             // unix ns of the last append or read, for hibernation
	keepAll   atomic.Bool              // exempt from retention (compact.go)

	recoveredAt int64        // ms, when openPartition ran: the last-seen time of replayed producers
	recovery    []Truncation // what openPartition cut off

	tags TagIndex // batch tag signatures for filtered reads (filter.go)

	mu      sync.RWMutex
	segs    []*segment
	start   int64
	end     int64
	changed chan struct{}
	closed  bool
}

type failure struct {
	err     error
	dirLost bool // the data directory was removed or replaced, not a sync error
}

// pendingProducer is a producer's state as it would be after the batches
// of the Append being checked.
type pendingProducer struct {
	id    int64
	known bool
	st    producerState
}

// AppendResult reports where an Append put its batches.
type AppendResult struct {
	BaseOffset    int64 // offset of the first record
	LastOffset    int64 // offset of the last record
	LogAppendTime int64 // broker timestamp (ms) with Config.LogAppendTime, else -1
	Duplicate     bool  // idempotent retry of batches already in the log; offsets are the original ones
}

// Slice is a byte range of a segment file, aligned to whole batches.
type Slice struct {
	File *os.File // the segment file; valid until ReadResult.Release
	Pos  int64    // byte position of the first batch
	Len  int64    // bytes of whole batches
}

// ReadResult is what a Read found. Call Release when the slices have been
// sent: until then their files stay open even if retention deletes them.
type ReadResult struct {
	Slices         []Slice // in offset order, possibly from several segments
	HighWatermark  int64   // the partition's end offset when read
	LogStartOffset int64   // the partition's first offset when read
	rel            *releaser
}

type releaser struct {
	once sync.Once
	segs []*segment
}

// Release lets retention close the files behind the slices. It is safe to
// call more than once and on an empty result.
func (r ReadResult) Release() {
	if r.rel == nil {
		return
	}
	r.rel.once.Do(func() {
		for _, s := range r.rel.segs {
			s.release()
		}
	})
}

// PartitionStats summarizes a partition's log.
type PartitionStats struct {
	Segments    int   // segment files, the active one included
	Bytes       int64 // bytes of batches in them
	StartOffset int64 // first offset kept
	EndOffset   int64 // next offset to assign
}

func (p *Partition) name() string { return fmt.Sprintf("%s-%d", p.topic, p.id) }

// errClosed is what operations on a closed or deleted partition return.
func (p *Partition) errClosed() error {
	return fmt.Errorf("%w: partition %s was deleted or its store closed", ErrUnknownTopicOrPartition, p.name())
}

// Append validates every batch of records (a Produce record set of Kafka
// v2 batches), checks idempotent-producer sequences, assigns offsets and
// writes the set with one write (or one copy into the mapped segment).
// Nothing is written if any batch is bad. It rewrites the broker-owned
// header fields in place in records.
func (p *Partition) Append(records []byte) (AppendResult, error) {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	infos, err := p.validate(records)
	if err != nil {
		return AppendResult{}, err
	}
	appendTime := int64(-1)
	if p.cfg.LogAppendTime {
		appendTime = time.Now().UnixMilli()
	}
	if dup, err := p.checkProducers(infos, appendTime); err != nil || dup != nil {
		if dup != nil {
			return *dup, nil
		}
		return AppendResult{}, err
	}
	w, err := p.write(records, infos, appendTime)
	if err != nil {
		return AppendResult{}, err
	}
	first := p.end
	p.commit(w)
	return AppendResult{BaseOffset: first, LastOffset: w.next - 1, LogAppendTime: appendTime}, nil
}

// validate refuses an append to a closed or failed partition and checks
// every batch of the record set (layout, CRC, size against a segment).
func (p *Partition) validate(records []byte) ([]batchInfo, error) {
	if p.down {
		return nil, p.errClosed()
	}
	if err := p.wakeLocked(); err != nil {
		return nil, err
	}
	if f := p.failed.Load(); f != nil {
		return nil, f.refusal(p.name())
	}
	infos, err := validateBatches(records, p.infos[:0])
	p.infos = infos[:0]
	if err != nil {
		return nil, fmt.Errorf("append to %s: %w", p.name(), err)
	}
	for _, b := range infos {
		if int64(b.size) > p.cfg.SegmentBytes {
			return nil, fmt.Errorf("%w: batch of %d bytes for %s exceeds the segment size %d", ErrRecordTooLarge, b.size, p.name(), p.cfg.SegmentBytes)
		}
	}
	return infos, nil
}

// checkProducers checks every idempotent producer's batch before anything
// is written, into p.pend (committed only once the write succeeded). A
// retried batch already in the log is returned as the duplicate's result.
func (p *Partition) checkProducers(infos []batchInfo, appendTime int64) (*AppendResult, error) {
	p.pend = p.pend[:0]
	seen := int64(-1)
	off := p.end
	for _, b := range infos {
		last := off + int64(b.lastDelta)
		if b.producerID >= 0 && b.baseSeq >= 0 {
			pp := p.pending(b.producerID)
			var st *producerState
			if pp.known {
				st = &pp.st
			}
			lastSeq := lastSequence(b.baseSeq, b.lastDelta)
			dup, err := st.check(b.producerID, b.epoch, b.baseSeq, lastSeq)
			if err != nil {
				return nil, fmt.Errorf("append to %s: %w", p.name(), err)
			}
			if dup != nil {
				return &AppendResult{BaseOffset: dup.firstOffset, LastOffset: dup.lastOffset, LogAppendTime: -1, Duplicate: true}, nil
			}
			if !pp.known {
				pp.known, pp.st = true, producerState{epoch: b.epoch}
			}
			if seen < 0 { // broker time, not the producer's timestamps, decides expiry
				seen = max(appendTime, time.Now().UnixMilli())
			}
			pp.st.apply(b.epoch, batchMeta{firstSeq: b.baseSeq, lastSeq: lastSeq, firstOffset: off, lastOffset: last}, seen)
		}
		off = last + 1
	}
	return nil, nil
}

// written is what write put into the active segment, for commit.
type written struct {
	seg        *segment
	pos, total int64 // where in the segment, how many bytes
	next       int64 // the offset after the last record
	maxTs      int64
}

// write stamps the batches with their offsets (and the append time),
// writes them at the end of the active segment (rolling it when full),
// indexes them and, with FsyncAlways, syncs them. Readers see nothing
// until commit.
func (p *Partition) write(records []byte, infos []batchInfo, appendTime int64) (written, error) {
	w := written{total: int64(len(records))}
	seg := p.segs[len(p.segs)-1]
	var err error
	if (seg.size > 0 && seg.size+w.total > p.cfg.SegmentBytes) || seg.indexFull(len(infos)) || seg.sealed {
		// (sealed: an earlier roll failed after sealing; retry it)
		if seg, err = p.roll(w.total); err != nil {
			return w, err
		}
	}
	if p.cfg.Produce == ProduceMmap && seg.size+w.total > int64(len(seg.data)) {
		if err := seg.mapData(seg.size + w.total); err != nil {
			return w, err
		}
	}
	w.seg, w.pos, w.maxTs = seg, seg.size, seg.maxTs
	off := p.end
	for _, b := range infos {
		stampBatch(records[b.pos:b.pos+b.size], off, appendTime)
		if appendTime >= 0 {
			w.maxTs = max(w.maxTs, appendTime)
		} else {
			w.maxTs = max(w.maxTs, b.maxTs)
		}
		off += int64(b.lastDelta) + 1
	}
	if p.cfg.Produce == ProduceMmap {
		copy(seg.data[w.pos:], records)
	} else if _, err := seg.log.WriteAt(records, w.pos); err != nil {
		return w, fmt.Errorf("append %d bytes to %s at position %d: %w (disk full or read-only?)", w.total, seg.logPath, w.pos, err)
	}
	off = p.end
	for _, b := range infos {
		seg.addIndex(off, w.pos+int64(b.pos), p.cfg.IndexIntervalBytes, int64(b.size))
		off += int64(b.lastDelta) + 1
	}
	w.next = off
	if p.cfg.Fsync == FsyncAlways {
		return w, p.syncAppend(seg)
	}
	return w, nil
}

// syncAppend makes an append durable (FsyncAlways); a failure fails the
// partition, since what is on disk is no longer known.
func (p *Partition) syncAppend(seg *segment) error {
	if err := unix.Fdatasync(int(seg.log.Fd())); err != nil {
		err = fmt.Errorf("fdatasync %s: %w", seg.logPath, err)
		p.failed.Store(&failure{err: err})
		return err
	}
	if err := seg.checkLinked(); err != nil {
		f := &failure{err: dirLostError(p.dir, "lost its files ("+err.Error()+")"), dirLost: true}
		p.failed.Store(f)
		return f.refusal(p.name())
	}
	return nil
}

// commit applies the checked producer states and publishes the write:
// the new end offset, then wakes long-polling readers.
func (p *Partition) commit(w written) {
	for i := range p.pend {
		pp := &p.pend[i]
		st := p.producers[pp.id]
		if st == nil {
			st = new(producerState)
			p.producers[pp.id] = st
		}
		*st = pp.st
	}
	p.mu.Lock()
	w.seg.size = w.pos + w.total
	w.seg.next = w.next
	w.seg.maxTs = w.maxTs
	w.seg.idxN = w.seg.idxW
	p.end = w.next
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
	p.mu.Unlock()
}

// pending returns the in-Append state of producer id, starting from the
// committed one.
func (p *Partition) pending(id int64) *pendingProducer {
	for i := range p.pend {
		if p.pend[i].id == id {
			return &p.pend[i]
		}
	}
	pp := pendingProducer{id: id}
	if st := p.producers[id]; st != nil {
		pp.known, pp.st = true, *st
	}
	p.pend = append(p.pend, pp)
	return &p.pend[len(p.pend)-1]
}

// roll seals the active segment, starts a new one at the end offset, and
// hands the sealed segment to a background flush that syncs it and then
// writes the producer snapshot at the new base. A snapshot at offset S thus
// says every segment below S is on disk, so recovery trusts those (as
// Kafka's recovery point). Flushes run one after another, in roll order.
// Called with appendMu.
func (p *Partition) roll(minCap int64) (*segment, error) {
	old := p.segs[len(p.segs)-1]
	if err := old.seal(false); err != nil {
		p.failed.Store(&failure{err: err})
		return nil, fmt.Errorf("roll %s: %w", p.name(), err)
	}
	ns, err := createSegment(p.dir, p.end, p.cfg, minCap)
	if err != nil {
		return nil, fmt.Errorf("roll %s: %w", p.name(), err)
	}
	if err := syncDir(p.dir); err != nil {
		ns.release()
		_ = ns.remove()
		return nil, fmt.Errorf("roll %s: sync directory: %w", p.name(), err)
	}
	p.mu.Lock()
	p.segs = append(p.segs, ns)
	p.mu.Unlock()

	snap := encodeSnapshot(p.end, p.producers)
	base := p.end
	prev, done := p.flushing, make(chan struct{})
	p.flushing = done
	old.acquire()
	go func() {
		defer close(done)
		defer old.release()
		if prev != nil {
			<-prev
		}
		err := old.syncFiles()
		if err == nil {
			err = writeSnapshotBytes(p.dir, base, snap)
		}
		if err != nil {
			p.failed.Store(&failure{err: fmt.Errorf("flush rolled segment of %s: %w", p.name(), err)})
		}
	}()
	return ns, nil
}

// waitFlush waits for the background flushes of rolled segments. Called
// with appendMu.
func (p *Partition) waitFlush() {
	if p.flushing != nil {
		<-p.flushing
	}
}

// Read returns slices of whole batches starting with the one holding
// offset, up to maxBytes but at least one batch; they may span segments.
// Only the index and batch headers are read. offset == EndOffset gives an
// empty result; outside [StartOffset, EndOffset] ErrOffsetOutOfRange.
func (p *Partition) Read(offset int64, maxBytes int32) (ReadResult, error) {
	if err := p.rlockWarm(); err != nil {
		return ReadResult{HighWatermark: p.EndOffset(), LogStartOffset: p.StartOffset()}, err
	}
	defer p.mu.RUnlock()
	res := ReadResult{HighWatermark: p.end, LogStartOffset: p.start}
	if p.closed {
		return res, p.errClosed()
	}
	if offset < p.start || offset > p.end {
		return res, fmt.Errorf("%w: offset %d of %s is outside [%d, %d]", ErrOffsetOutOfRange, offset, p.name(), p.start, p.end)
	}
	if offset == p.end {
		return res, nil
	}
	i := p.segmentFor(offset)
	var buf [batchHeaderSize]byte
	seg := p.segs[i]
	startPos, firstSize, err := seg.find(offset, buf[:])
	if err != nil {
		return res, err
	}
	budget := max(int64(maxBytes), 0)
	rel := &releaser{}
	for ; i < len(p.segs); i++ {
		seg = p.segs[i]
		if seg.size == startPos {
			startPos = 0
			continue
		}
		endPos, size, err := seg.boundary(startPos, budget, buf[:])
		if err != nil {
			for _, s := range rel.segs {
				s.release()
			}
			return ReadResult{HighWatermark: p.end, LogStartOffset: p.start}, err
		}
		if endPos == startPos {
			if len(res.Slices) > 0 {
				break
			}
			if firstSize < 0 {
				firstSize = size
			}
			if firstSize < 0 {
				h, err := seg.readHeader(startPos, buf[:])
				if err != nil {
					return ReadResult{HighWatermark: p.end, LogStartOffset: p.start}, err
				}
				firstSize = h.size
			}
			endPos = startPos + firstSize // at least one whole batch
		}
		seg.acquire()
		rel.segs = append(rel.segs, seg)
		res.Slices = append(res.Slices, Slice{File: seg.log, Pos: startPos, Len: endPos - startPos})
		budget -= endPos - startPos
		if budget <= 0 || endPos < seg.size {
			break
		}
		startPos = 0
	}
	res.rel = rel
	return res, nil
}

// segmentFor returns the index of the segment holding offset (with mu held
// and offset within [start, end)).
func (p *Partition) segmentFor(offset int64) int {
	lo, hi := 0, len(p.segs)
	for lo < hi {
		m := (lo + hi) / 2
		if p.segs[m].base <= offset {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return max(lo-1, 0)
}

// find returns the position of the batch holding offset and its size, or
// size -1 when the index pointed straight at it and no header was read
// (the common case for a consumer following the log with batches of at
// least IndexIntervalBytes: no syscall at all).
func (s *segment) find(offset int64, buf []byte) (int64, int64, error) {
	base, pos := s.lookupEntry(offset, s.idxN)
	if base == offset && s.idxN > 0 {
		return pos, -1, nil
	}
	for pos < s.size {
		h, err := s.readHeader(pos, buf)
		if err != nil {
			return 0, 0, err
		}
		if h.size < batchHeaderSize {
			return 0, 0, fmt.Errorf("segment %s: bad batch length at position %d; restart the broker to recover the log", s.logPath, pos)
		}
		if h.baseOffset+int64(h.lastDelta) >= offset {
			return pos, h.size, nil
		}
		pos += h.size
	}
	return 0, 0, fmt.Errorf("segment %s: offset %d not found below position %d; restart the broker to recover the log", s.logPath, offset, s.size)
}

// boundary returns the end of the last whole batch that starts at or after
// from and ends within from+budget (from itself if none fits), and the size
// of the batch at from when it had to read that header (else -1).
func (s *segment) boundary(from, budget int64, buf []byte) (int64, int64, error) {
	limit := from + budget
	if s.size <= limit {
		return s.size, -1, nil
	}
	pos := max(s.lookupPos(limit, s.idxN), from)
	firstSize := int64(-1)
	for pos < s.size {
		if _, err := s.log.ReadAt(buf[:batchLogOverhead], pos); err != nil {
			return 0, 0, fmt.Errorf("read batch length at position %d of %s: %w", pos, s.logPath, err)
		}
		h := parseHeader(buf)
		if h.size < batchHeaderSize {
			return 0, 0, fmt.Errorf("segment %s: bad batch length at position %d; restart the broker to recover the log", s.logPath, pos)
		}
		if pos == from {
			firstSize = h.size
		}
		if pos+h.size > limit {
			break
		}
		pos += h.size
	}
	return pos, firstSize, nil
}

// StartOffset is the first offset still in the log.
func (p *Partition) StartOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.start
}

// EndOffset is the next offset to assign (the high watermark: there is no
// replication).
func (p *Partition) EndOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.end
}

// Changed returns a channel closed by the next successful append (or when
// the partition closes), for long-poll Fetch: take the channel, check
// EndOffset, then wait.
func (p *Partition) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
		if p.closed {
			close(p.changed)
		}
	}
	return p.changed
}

// Stats summarizes the log.
func (p *Partition) Stats() PartitionStats {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st := PartitionStats{Segments: len(p.segs), StartOffset: p.start, EndOffset: p.end}
	for _, s := range p.segs {
		st.Bytes += s.size
	}
	return st
}

// OffsetForTime finds the first batch whose max timestamp is >= ts and
// returns the offset and timestamp of its first record at or after ts
// (decoding uncompressed batches; for compressed or LogAppendTime batches
// the batch base offset and max timestamp). (-1, -1, nil) if none.
func (p *Partition) OffsetForTime(ts int64) (int64, int64, error) {
	if err := p.rlockWarm(); err != nil {
		return -1, -1, err
	}
	defer p.mu.RUnlock()
	if p.closed {
		return -1, -1, p.errClosed()
	}
	var buf [batchHeaderSize]byte
	for _, s := range p.segs {
		if s.maxTs < ts {
			continue
		}
		for pos := int64(0); pos < s.size; {
			h, err := s.readHeader(pos, buf[:])
			if err != nil {
				return -1, -1, err
			}
			if h.size < batchHeaderSize {
				return -1, -1, fmt.Errorf("segment %s: bad batch length at position %d; restart the broker to recover the log", s.logPath, pos)
			}
			if h.maxTs >= ts {
				if h.attrs&(attrCompressionMask|attrLogAppendTime) != 0 {
					return h.baseOffset, h.maxTs, nil
				}
				batch := make([]byte, h.size)
				if _, err := s.log.ReadAt(batch, pos); err != nil {
					return -1, -1, fmt.Errorf("read batch at position %d of %s: %w", pos, s.logPath, err)
				}
				if d, t, ok := firstRecordAtOrAfter(batch, ts); ok {
					return h.baseOffset + int64(d), t, nil
				}
				return h.baseOffset, h.maxTs, nil
			}
			pos += h.size
		}
	}
	return -1, -1, nil
}

// Retain applies the retention limits at time now: the oldest segments go
// while the rest still hold RetentionBytes, or while their newest batch is
// older than RetentionAge. The active segment always stays. It also expires
// idle idempotent producers. Files of
// deleted segments stay open until every ReadResult using them is released.
// It returns how many segments were deleted.
func (p *Partition) Retain(now time.Time) (int, error) {
	p.appendMu.Lock() // the appender reads segs without mu
	defer p.appendMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nil
	}
	var total int64
	for _, s := range p.segs {
		total += s.size
	}
	n := 0
	var errs []error
	for len(p.segs) > 1 && !p.keepAll.Load() {
		s := p.segs[0]
		bySize := p.cfg.RetentionBytes >= 0 && total-s.size >= p.cfg.RetentionBytes
		byAge := p.cfg.RetentionAge > 0 && s.age(now) > p.cfg.RetentionAge
		if !bySize && !byAge {
			break
		}
		p.segs = p.segs[1:]
		p.start = p.segs[0].base
		total -= s.size
		if err := s.remove(); err != nil {
			errs = append(errs, fmt.Errorf("retention of %s: %w", s.logPath, err))
		}
		s.release()
		n++
	}
	// As Kafka: a producer whose last batch is gone, or that has been idle
	// longer than ProducerExpiration, is
	// forgotten; its next batch starts afresh. Idle time is broker time
	// since its last append (or since recovery, for replayed batches).
	idle := now.Add(-p.cfg.ProducerExpiration).UnixMilli()
	for id, st := range p.producers {
		if st.n == 0 || st.batches[st.n-1].lastOffset < p.start || (p.cfg.ProducerExpiration > 0 && st.lastTs < idle) {
			delete(p.producers, id)
		}
	}
	return n, errors.Join(errs...)
}

// sync forces the active segment's data to disk.
func (p *Partition) sync() error {
	p.mu.RLock()
	if p.closed || p.cold.Load() { // hibernate synced it
		p.mu.RUnlock()
		return nil
	}
	s := p.segs[len(p.segs)-1]
	s.acquire()
	p.mu.RUnlock()
	defer s.release()
	if err := unix.Fdatasync(int(s.log.Fd())); err != nil {
		err = fmt.Errorf("fdatasync %s: %w", s.logPath, err)
		p.failed.Store(&failure{err: err})
		return err
	}
	return nil
}

// shutdown stops appends and drops the partition's references. With
// durable it first seals the active segment and snapshots the producers,
// so the next Open trusts everything without a scan.
func (p *Partition) shutdown(durable bool) error {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	if p.down {
		return nil
	}
	var err error
	if durable {
		err = p.wakeLocked() // sealing needs the files
	}
	p.down = true
	p.waitFlush()
	if durable && err == nil && len(p.segs) > 0 {
		if err = p.segs[len(p.segs)-1].seal(true); err == nil {
			err = writeSnapshot(p.dir, p.end, p.producers)
		}
	}
	p.mu.Lock()
	p.closed = true
	segs := p.segs
	p.segs = nil
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
	p.mu.Unlock()
	for _, s := range segs {
		s.release()
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", p.name(), err)
	}
	return nil
}

// openPartition recovers the partition in dir. Sealed segments whose
// index checks out are trusted; the active segment (unless the store shut
// down cleanly) and any segment with a missing or stale index are scanned
// batch by batch (length, magic, contiguous offsets, CRC-32C), a torn or
// corrupt tail is truncated, the index rebuilt, and segments that no longer
// follow on are removed. Producer state comes from the newest snapshot plus
// a replay of the batches after it.
func openPartition(dir, topic string, id int32, cfg *Config, clean bool) (*Partition, error) {
	p := &Partition{topic: topic, id: id, dir: dir, cfg: cfg, recoveredAt: time.Now().UnixMilli()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create partition directory %s: %w (check that the data directory is writable)", dir, err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) > 0 {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	bases, err := listOffsets(dir, ".log")
	if err != nil {
		return nil, fmt.Errorf("list segments of %s: %w", dir, err)
	}
	// The newest producer snapshot is the recovery point: segments below
	// it were synced before it was written, so their index is enough; later
	// ones are scanned. Batches from it on are replayed into the producer
	// state during the scans (one pass over the data).
	snapOff, producers := loadSnapshot(dir, math.MaxInt64)
	p.producers = producers
	replay := func(h header) {
		if h.baseOffset >= snapOff {
			p.replayBatch(h)
		}
	}
	fail := func(err error) (*Partition, error) {
		for _, s := range p.segs {
			s.release()
		}
		return nil, err
	}
	for i, base := range bases {
		if n := len(p.segs); n > 0 && (p.segs[n-1].next != base || p.segs[n-1].size == 0) {
			// The chain breaks here (a corrupt or truncated segment before
			// it): what follows cannot be served in order, as in Kafka.
			for _, b := range bases[i:] {
				p.dropSegment(b, "it no longer follows on from the truncated segment before it")
			}
			break
		}
		last := i == len(bases)-1
		trust := clean || (!last && bases[i+1] <= snapOff)
		s, err := p.recoverSegment(base, trust, snapOff, replay)
		if err != nil {
			return fail(err)
		}
		p.segs = append(p.segs, s)
	}
	if err := p.activateTail(); err != nil {
		return fail(err)
	}
	p.start = p.segs[0].base
	p.end = p.segs[len(p.segs)-1].next
	if snapOff > p.end { // the snapshot describes a longer log than survived
		if err := p.recoverProducers(); err != nil {
			return fail(err)
		}
	}
	return p, nil
}

// recoverSegment opens one segment at startup: a trusted one (clean
// shutdown, or synced before the producer snapshot) by its index, replaying
// only the batches from the snapshot on; any other is scanned and rebuilt,
// its torn tail truncated and recorded.
func (p *Partition) recoverSegment(base int64, trust bool, snapOff int64, replay func(header)) (*segment, error) {
	s, err := openSegment(p.dir, base)
	if err != nil {
		return nil, err
	}
	st, err := s.log.Stat()
	if err != nil {
		s.release()
		return nil, fmt.Errorf("stat segment %s: %w", s.logPath, err)
	}
	if trust && s.checkIndex(st.Size()) {
		if s.next > snapOff {
			from := int64(0)
			if snapOff > s.base {
				from = s.lookup(snapOff, s.idxN)
			}
			if err := s.forEach(from, replay); err != nil {
				s.release()
				return nil, fmt.Errorf("recover producer state of %s: %w", p.name(), err)
			}
		}
	} else if r, err := s.rebuild(st.Size(), p.cfg, replay); err != nil {
		s.release()
		return nil, err
	} else if r.validEnd < st.Size() {
		p.recovery = append(p.recovery, Truncation{Partition: p.name(), Segment: s.logPath,
			FromOffset: r.next, Position: r.validEnd, Bytes: st.Size() - r.validEnd, Zero: r.zero, Reason: r.why})
	}
	s.sealed = true
	return s, nil
}

// activateTail makes the last recovered segment the active one, or creates
// the first segment of an empty partition.
func (p *Partition) activateTail() error {
	if len(p.segs) > 0 {
		act := p.segs[len(p.segs)-1]
		act.sealed = false
		return act.activate(p.cfg, 0, false)
	}
	s, err := createSegment(p.dir, 0, p.cfg, 0)
	if err != nil {
		return err
	}
	p.segs = append(p.segs, s)
	if err := syncDir(p.dir); err != nil { // the segment's name must survive a power loss like its data
		return fmt.Errorf("sync partition directory %s: %w", p.dir, err)
	}
	return nil
}

// rebuild scans a segment whose index cannot be trusted, truncating a torn
// tail and writing a fresh index.
func (s *segment) rebuild(fileSize int64, cfg *Config, fn func(h header)) (scanResult, error) {
	if err := s.mapIndex(cfg.indexCapacity(max(cfg.SegmentBytes, fileSize)), true); err != nil {
		return scanResult{}, err
	}
	r, err := s.scan(fileSize, cfg, true, fn)
	if err != nil {
		return r, err
	}
	s.size, s.next, s.maxTs = r.validEnd, r.next, r.maxTs
	if r.validEnd < fileSize {
		if err := s.log.Truncate(r.validEnd); err != nil {
			return r, fmt.Errorf("truncate torn tail of %s at position %d: %w (check permissions)", s.logPath, r.validEnd, err)
		}
	}
	if err := s.trim(); err != nil {
		return r, err
	}
	if err := unix.Fdatasync(int(s.log.Fd())); err != nil {
		return r, fmt.Errorf("fdatasync %s after recovery: %w", s.logPath, err)
	}
	return r, nil
}

// recoverProducers loads the newest producer snapshot at or below the end
// of the log and replays the batches after it (used when recovery cut the
// log below the newest snapshot).
func (p *Partition) recoverProducers() error {
	from, producers := loadSnapshot(p.dir, p.end)
	p.producers = producers
	from = max(from, p.start)
	for _, s := range p.segs {
		if s.next <= from {
			continue
		}
		pos := int64(0)
		if from > s.base {
			pos = s.lookup(from, s.idxN)
		}
		err := s.forEach(pos, func(h header) {
			if h.baseOffset >= from {
				p.replayBatch(h)
			}
		})
		if err != nil {
			return fmt.Errorf("recover producer state of %s: %w", p.name(), err)
		}
	}
	return nil
}

// replayBatch applies a batch read back from the log to the producer state.
func (p *Partition) replayBatch(h header) {
	if h.producerID < 0 || h.baseSeq < 0 {
		return
	}
	st := p.producers[h.producerID]
	if st == nil {
		st = &producerState{epoch: h.epoch}
		p.producers[h.producerID] = st
	}
	st.apply(h.epoch, batchMeta{firstSeq: h.baseSeq, lastSeq: lastSequence(h.baseSeq, h.lastDelta),
		firstOffset: h.baseOffset, lastOffset: h.baseOffset + int64(h.lastDelta)}, p.recoveredAt)
}

// partitionDir names a partition's directory.
func partitionDir(root, topic string, id int32) string {
	return filepath.Join(root, fmt.Sprintf("%s-%d", topic, id))
}

// splitPartitionDir parses "<topic>-<n>".
func splitPartitionDir(name string) (string, int32, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	var n int64
	for _, c := range name[i+1:] {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		n = n*10 + int64(c-'0')
		if n > maxPartitions {
			return "", 0, false
		}
	}
	if ValidateTopic(name[:i]) != nil {
		return "", 0, false
	}
	return name[:i], int32(n), true
}
