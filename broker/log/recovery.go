package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Truncation is data that recovery cut off a partition: a torn or corrupt
// tail of a segment, or a whole segment that no longer followed on.
type Truncation struct {
	Partition  string // topic-partition
	Segment    string // the segment file
	FromOffset int64  // the first offset no longer in the log (the log now ends before it)
	Position   int64  // byte position in Segment where the cut starts
	Bytes      int64  // bytes cut off
	Zero       bool   // every cut byte was zero: space preallocated for appends, no record lost
	Reason     string // what was wrong there
}

// String is the log line of a truncation.
func (t Truncation) String() string {
	what := "records from offset %d on are dropped"
	if t.Zero {
		what = "no records lost (log ends at offset %d)"
	}
	return fmt.Sprintf("recovery truncated %s: %d bytes of %s from position %d cut: %s; "+what,
		t.Partition, t.Bytes, filepath.Base(t.Segment), t.Position, t.Reason, t.FromOffset)
}

// RecoveryStats is what Open's recovery cut off, over all partitions.
type RecoveryStats struct {
	Truncations  []Truncation
	BytesDropped int64 // bytes cut that were not zero-filled preallocation
}

// dropSegment removes a segment that recovery cannot chain, recording it.
func (p *Partition) dropSegment(base int64, why string) {
	logPath := filepath.Join(p.dir, segmentName(base, ".log"))
	var size int64
	if st, err := os.Stat(logPath); err == nil {
		size = st.Size()
	}
	_ = os.Remove(logPath)
	_ = os.Remove(filepath.Join(p.dir, segmentName(base, ".index")))
	p.recovery = append(p.recovery, Truncation{Partition: p.name(), Segment: logPath, FromOffset: base, Bytes: size, Reason: why})
}

// tornReason says why the bytes at the start of b (the rest of the
// file) do not hold the batch expected at offset want, and whether they
// are all zero. h is their header when b holds one (full).
func tornReason(b []byte, h header, want int64, full bool) (string, bool) {
	if allZero(b) {
		return "zero-filled tail", true
	}
	return tornWhy(b, h, want, full), false
}

func tornWhy(b []byte, h header, want int64, full bool) string {
	switch {
	case !full:
		return fmt.Sprintf("%d trailing bytes, too few for a batch header: a torn write", len(b))
	case h.magic != 2:
		return fmt.Sprintf("bad magic byte %d where a batch should start", h.magic)
	case h.baseOffset != want:
		return fmt.Sprintf("batch header claims base offset %d, the log expects %d", h.baseOffset, want)
	case h.size > int64(len(b)):
		return fmt.Sprintf("a %d-byte batch with only %d bytes left in the file: a torn write", h.size, len(b))
	case h.size < batchHeaderSize || h.count <= 0 || h.lastDelta != h.count-1:
		return fmt.Sprintf("implausible batch header (length %d, %d records, last offset delta %d)", h.size, h.count, h.lastDelta)
	}
	return fmt.Sprintf("CRC-32C mismatch in the %d-byte batch at offset %d: corrupt data", h.size, h.baseOffset)
}

// allZero compares b with zeros a chunk at a time (memequal is
// vectorized: a preallocated 1 GiB tail takes a fraction of the scan).
func allZero(b []byte) bool {
	var zero [64 << 10]byte
	for len(b) > 0 {
		n := min(len(b), len(zero))
		if !bytes.Equal(b[:n], zero[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// quarantineSuffix marks a partition directory startup could not open,
// moved aside with its files for inspection.
const quarantineSuffix = ".quarantined"

// setAside handles a partition directory Open could not recover. A lack of
// resources (descriptors, memory) leaves it in place, unserved, for the
// next start; anything else moves it aside to NAME.quarantined so the
// broker starts and serves the rest, and the partition starts empty.
// Either way a log line says what and why.
func (s *Store) setAside(name string, err error) {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOMEM) {
		s.logf("startup: partition %s not served: %v (raise the open file limit, ulimit -n, or delete topics); its files are untouched", name, err)
		return
	}
	from := filepath.Join(s.dir, name)
	to := from + quarantineSuffix
	if _, serr := os.Stat(to); serr == nil {
		to = fmt.Sprintf("%s%s.%d", from, quarantineSuffix, time.Now().UnixNano()) // no '-': never parsed as a partition
	}
	if rerr := os.Rename(from, to); rerr != nil {
		s.logf("startup: partition %s not served: %v; moving it aside failed too: %v", name, err, rerr)
		return
	}
	s.logf("startup: partition %s cannot be recovered (%v): moved it to %s with its files, for inspection; the partition starts empty", name, err, filepath.Base(to))
}

// fillGaps opens partitions missing from a topic (a crash inside
// CreateTopic, a quarantined or unserved partition). A topic whose gap
// cannot be filled is not served at all, with a log line.
func (s *Store) fillGaps() {
	for topic, ps := range s.topics {
		for id, p := range ps {
			if p != nil {
				continue
			}
			np, err := openPartition(partitionDir(s.dir, topic, int32(id)), topic, int32(id), &s.cfg, false)
			if err == nil {
				ps[id] = np
				continue
			}
			s.logf("startup: topic %s not served: partition %d cannot be opened or created: %v", topic, id, err)
			for _, q := range ps {
				if q != nil {
					_ = q.shutdown(false)
				}
			}
			delete(s.topics, topic)
			break
		}
	}
}

// logRecovery gathers and logs what recovery cut off.
func (s *Store) logRecovery() {
	for _, ps := range s.topics {
		for _, p := range ps {
			for _, t := range p.recovery {
				s.recovery.Truncations = append(s.recovery.Truncations, t)
				if !t.Zero {
					s.recovery.BytesDropped += t.Bytes
				}
				s.logf("%v", t)
			}
			p.recovery = nil
		}
	}
}

// Recovery returns what Open's recovery cut off (empty after a clean
// shutdown or a crash that lost nothing).
func (s *Store) Recovery() RecoveryStats { return s.recovery }

// checkPartitionCap refuses a topic of n partitions that would take the
// store past Config.MaxPartitions. Called with s.mu held.
func (s *Store) checkPartitionCap(topic string, n int32) error {
	if s.cfg.MaxPartitions < 0 {
		return nil
	}
	have := 0
	for _, ps := range s.topics {
		have += len(ps)
	}
	if have+int(n) > s.cfg.MaxPartitions {
		return fmt.Errorf("%w: topic %s of %d partitions refused: the store holds %d and its limit is %d (--max-partitions); delete topics or raise the limit", ErrInvalidPartitions, topic, n, have, s.cfg.MaxPartitions)
	}
	return nil
}
