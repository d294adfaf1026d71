package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// producerBatchesKept is how many recent batches per producer are
// remembered for duplicate detection: a Kafka producer has at most five
// requests in flight per partition.
const producerBatchesKept = 5

// batchMeta identifies an appended batch of an idempotent producer.
type batchMeta struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset int64
}

// producerState is what the partition remembers of one producer id.
type producerState struct {
	lastTs  int64 // broker time (ms) of its last append, for expiry
	epoch   int16
	n       int
	batches [producerBatchesKept]batchMeta // oldest first
}

func (st *producerState) add(m batchMeta) {
	if st.n == producerBatchesKept {
		copy(st.batches[:], st.batches[1:])
		st.n--
	}
	st.batches[st.n] = m
	st.n++
}

// check applies Kafka's sequence rules for a batch of this producer. A nil
// state is a producer this partition has not seen (or whose state expired):
// any sequence is accepted, as Kafka does. It returns the original batch
// when this one is a retry of a batch already in the log.
func (st *producerState) check(pid int64, epoch int16, firstSeq, lastSeq int32) (*batchMeta, error) {
	if st == nil {
		return nil, nil
	}
	if epoch < st.epoch {
		return nil, fmt.Errorf("%w: producer %d sent epoch %d but epoch %d is current (the producer was fenced; restart it)", ErrInvalidProducerEpoch, pid, epoch, st.epoch)
	}
	if epoch > st.epoch {
		if firstSeq != 0 {
			return nil, fmt.Errorf("%w: producer %d started epoch %d at sequence %d, expected 0", ErrOutOfOrderSequence, pid, epoch, firstSeq)
		}
		return nil, nil
	}
	for i := 0; i < st.n; i++ {
		if b := &st.batches[i]; b.firstSeq == firstSeq && b.lastSeq == lastSeq {
			return b, nil
		}
	}
	if st.n == 0 {
		return nil, nil
	}
	last := st.batches[st.n-1].lastSeq
	if !(firstSeq == last+1 || (firstSeq == 0 && last == math.MaxInt32)) {
		return nil, fmt.Errorf("%w: producer %d epoch %d sent sequence %d after %d", ErrOutOfOrderSequence, pid, epoch, firstSeq, last)
	}
	return nil, nil
}

// apply records an appended batch (also used when replaying the log).
func (st *producerState) apply(epoch int16, m batchMeta, ts int64) {
	if epoch != st.epoch {
		*st = producerState{epoch: epoch}
	}
	st.add(m)
	st.lastTs = ts
}

// Producer snapshots: "<20-digit offset>.snapshot" holds the producer state
// as of that offset (every batch below it applied). They are written when a
// segment rolls (after the sealed segment is synced) and at Close, so
// recovery only replays the batches after the newest snapshot, which are in
// the segments it scans anyway.
const snapshotExt = ".snapshot"

const snapshotMagic = 0x43535032 // "CSP2": v2 adds each producer's last timestamp

func encodeSnapshot(offset int64, producers map[int64]*producerState) []byte {
	ids := make([]int64, 0, len(producers))
	for id := range producers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b := binary.BigEndian.AppendUint32(nil, snapshotMagic)
	b = binary.BigEndian.AppendUint64(b, uint64(offset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		st := producers[id]
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		b = binary.BigEndian.AppendUint64(b, uint64(st.lastTs))
		b = binary.BigEndian.AppendUint16(b, uint16(st.epoch))
		b = append(b, byte(st.n))
		for _, m := range st.batches[:st.n] {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.firstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOffset))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadSnapshot = errors.New("malformed producer snapshot")

func decodeSnapshot(b []byte) (int64, map[int64]*producerState, error) {
	if len(b) < 20 || binary.BigEndian.Uint32(b) != snapshotMagic ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return 0, nil, errBadSnapshot
	}
	off := int64(binary.BigEndian.Uint64(b[4:]))
	n := int(binary.BigEndian.Uint32(b[12:]))
	r := b[16 : len(b)-4]
	out := make(map[int64]*producerState, min(n, 1<<16))
	for i := 0; i < n; i++ {
		if len(r) < 19 {
			return 0, nil, errBadSnapshot
		}
		id := int64(binary.BigEndian.Uint64(r))
		lastTs := int64(binary.BigEndian.Uint64(r[8:]))
		st := &producerState{epoch: int16(binary.BigEndian.Uint16(r[16:]))}
		k := int(r[18])
		r = r[19:]
		if k > producerBatchesKept || len(r) < k*24 {
			return 0, nil, errBadSnapshot
		}
		for j := 0; j < k; j++ {
			st.add(batchMeta{
				firstSeq:    int32(binary.BigEndian.Uint32(r)),
				lastSeq:     int32(binary.BigEndian.Uint32(r[4:])),
				firstOffset: int64(binary.BigEndian.Uint64(r[8:])),
				lastOffset:  int64(binary.BigEndian.Uint64(r[16:])),
			})
			r = r[24:]
		}
		st.lastTs = lastTs
		out[id] = st
	}
	if len(r) != 0 {
		return 0, nil, errBadSnapshot
	}
	return off, out, nil
}

// writeSnapshot durably writes the producer state as of offset and keeps
// only the newest snapshotsKept snapshot files.
func writeSnapshot(dir string, offset int64, producers map[int64]*producerState) error {
	return writeSnapshotBytes(dir, offset, encodeSnapshot(offset, producers))
}

// writeSnapshotBytes durably writes an encoded snapshot.
func writeSnapshotBytes(dir string, offset int64, snap []byte) error {
	name := filepath.Join(dir, segmentName(offset, snapshotExt))
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write producer snapshot %s: %w (check that the data directory is writable)", tmp, err)
	}
	_, err = f.Write(snap)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write producer snapshot %s: %w", name, err)
	}
	offs, _ := listOffsets(dir, snapshotExt)
	for i := 0; i+snapshotsKept < len(offs); i++ {
		_ = os.Remove(filepath.Join(dir, segmentName(offs[i], snapshotExt)))
	}
	return nil
}

const snapshotsKept = 3

// loadSnapshot returns the newest readable snapshot at or below limit,
// removing those above it (they describe a log that no longer exists).
// With none it returns offset -1 and an empty state.
func loadSnapshot(dir string, limit int64) (int64, map[int64]*producerState) {
	offs, _ := listOffsets(dir, snapshotExt)
	for i := len(offs) - 1; i >= 0; i-- {
		name := filepath.Join(dir, segmentName(offs[i], snapshotExt))
		if offs[i] > limit {
			_ = os.Remove(name)
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if off, st, err := decodeSnapshot(b); err == nil && off == offs[i] {
			return off, st
		}
	}
	return -1, map[int64]*producerState{}
}

// listOffsets returns the sorted offsets of "<20 digits><ext>" files in dir.
func listOffsets(dir, ext string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ext) || len(name) != 20+len(ext) {
			continue
		}
		v, err := strconv.ParseInt(name[:20], 10, 64)
		if err != nil || v < 0 {
			continue
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// syncDir makes renames and creations in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
