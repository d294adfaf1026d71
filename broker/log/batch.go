package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/copyscope/copyscope/internal/recordbatch"
)

// The v2 RecordBatch header layout, named as this package uses it; the
// positions are internal/recordbatch's (the one definition).
const (
	posBaseOffset      = recordbatch.PosBaseOffset
	posBatchLength     = recordbatch.PosBatchLength
	posLeaderEpoch     = recordbatch.PosLeaderEpoch
	posMagic           = recordbatch.PosMagic
	posCRC             = recordbatch.PosCRC
	posAttributes      = recordbatch.PosAttributes
	posLastOffsetDelta = recordbatch.PosLastOffsetDelta
	posBaseTimestamp   = recordbatch.PosBaseTimestamp
	posMaxTimestamp    = recordbatch.PosMaxTimestamp
	posProducerID      = recordbatch.PosProducerID
	posProducerEpoch   = recordbatch.PosProducerEpoch
	posBaseSequence    = recordbatch.PosBaseSequence
	posRecordCount     = recordbatch.PosRecordCount
	batchHeaderSize    = recordbatch.HeaderSize
	// batchLogOverhead is the part of the header not counted in batchLength.
	batchLogOverhead = recordbatch.LogOverhead

	attrCompressionMask = 0x07
	attrLogAppendTime   = 0x08
	maxCompressionCodec = 4 // none, gzip, snappy, lz4, zstd
)

// castagnoli is the CRC-32C table (hardware accelerated by hash/crc32); it
// is built once and never written.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchInfo is what Append needs from one validated batch.
type batchInfo struct {
	pos        int // start within the record set
	size       int // whole batch, header included
	lastDelta  int32
	maxTs      int64
	producerID int64
	epoch      int16
	baseSeq    int32
}

// validateBatches checks every batch of a Produce record set (length,
// magic 2, CRC-32C, count and offset-delta consistency, codec) and returns
// their infos appended to out. It touches each byte once, for the CRC.
func validateBatches(b []byte, out []batchInfo) ([]batchInfo, error) {
	if len(b) == 0 {
		return out, fmt.Errorf("%w: empty record set (send at least one v2 record batch)", ErrCorruptMessage)
	}
	for pos := 0; pos < len(b); {
		rest := b[pos:]
		if len(rest) < batchHeaderSize {
			return out, fmt.Errorf("%w: %d bytes at position %d are shorter than a v2 batch header (%d bytes)", ErrCorruptMessage, len(rest), pos, batchHeaderSize)
		}
		blen := int64(int32(binary.BigEndian.Uint32(rest[posBatchLength:])))
		if blen < batchHeaderSize-batchLogOverhead {
			return out, fmt.Errorf("%w: batch at position %d has length %d, less than its header", ErrCorruptMessage, pos, blen)
		}
		size := blen + batchLogOverhead
		if size > int64(len(rest)) {
			return out, fmt.Errorf("%w: batch at position %d claims %d bytes but only %d remain (truncated request)", ErrCorruptMessage, pos, size, len(rest))
		}
		if m := rest[posMagic]; m != 2 {
			return out, fmt.Errorf("%w: batch at position %d has magic %d; only v2 record batches (magic 2) are accepted", ErrCorruptMessage, pos, m)
		}
		want := binary.BigEndian.Uint32(rest[posCRC:])
		if got := crc32.Checksum(rest[posAttributes:size], castagnoli); got != want {
			return out, fmt.Errorf("%w: batch at position %d fails its CRC-32C (stored %08x, computed %08x)", ErrCorruptMessage, pos, want, got)
		}
		count := int32(binary.BigEndian.Uint32(rest[posRecordCount:]))
		delta := int32(binary.BigEndian.Uint32(rest[posLastOffsetDelta:]))
		if count <= 0 {
			return out, fmt.Errorf("%w: batch at position %d has record count %d; a batch holds at least one record", ErrCorruptMessage, pos, count)
		}
		if delta != count-1 {
			return out, fmt.Errorf("%w: batch at position %d has %d records but last offset delta %d (inconsistent batch offset range)", ErrCorruptMessage, pos, count, delta)
		}
		attrs := binary.BigEndian.Uint16(rest[posAttributes:])
		if c := attrs & attrCompressionMask; c > maxCompressionCodec {
			return out, fmt.Errorf("%w: batch at position %d uses unknown compression codec %d", ErrCorruptMessage, pos, c)
		}
		out = append(out, batchInfo{
			pos:        pos,
			size:       int(size),
			lastDelta:  delta,
			maxTs:      int64(binary.BigEndian.Uint64(rest[posMaxTimestamp:])),
			producerID: int64(binary.BigEndian.Uint64(rest[posProducerID:])),
			epoch:      int16(binary.BigEndian.Uint16(rest[posProducerEpoch:])),
			baseSeq:    int32(binary.BigEndian.Uint32(rest[posBaseSequence:])),
		})
		pos += int(size)
	}
	return out, nil
}

// stampBatch writes the broker-owned fields of a validated batch: base
// offset and partition leader epoch (outside the CRC), and with appendTime
// >= 0 the max timestamp and the LogAppendTime attribute bit, recomputing
// the CRC because both are covered by it.
func stampBatch(b []byte, baseOffset int64, appendTime int64) {
	binary.BigEndian.PutUint64(b[posBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint32(b[posLeaderEpoch:], 0)
	if appendTime < 0 {
		return
	}
	binary.BigEndian.PutUint64(b[posMaxTimestamp:], uint64(appendTime))
	attrs := binary.BigEndian.Uint16(b[posAttributes:]) | attrLogAppendTime
	binary.BigEndian.PutUint16(b[posAttributes:], attrs)
	binary.BigEndian.PutUint32(b[posCRC:], crc32.Checksum(b[posAttributes:], castagnoli))
}

// lastSequence is the sequence of a batch's last record; sequences wrap
// from MaxInt32 to 0 as in Kafka.
func lastSequence(base, delta int32) int32 {
	if int64(base)+int64(delta) > math.MaxInt32 {
		return int32(int64(base) + int64(delta) - math.MaxInt32 - 1)
	}
	return base + delta
}

// header is a decoded batch header read from a segment.
type header struct {
	baseOffset int64
	size       int64
	lastDelta  int32
	attrs      uint16
	baseTs     int64
	maxTs      int64
	producerID int64
	epoch      int16
	baseSeq    int32
	count      int32
	magic      byte
}

func parseHeader(h []byte) header {
	return header{
		baseOffset: int64(binary.BigEndian.Uint64(h[posBaseOffset:])),
		size:       int64(int32(binary.BigEndian.Uint32(h[posBatchLength:]))) + batchLogOverhead,
		magic:      h[posMagic],
		attrs:      binary.BigEndian.Uint16(h[posAttributes:]),
		lastDelta:  int32(binary.BigEndian.Uint32(h[posLastOffsetDelta:])),
		baseTs:     int64(binary.BigEndian.Uint64(h[posBaseTimestamp:])),
		maxTs:      int64(binary.BigEndian.Uint64(h[posMaxTimestamp:])),
		producerID: int64(binary.BigEndian.Uint64(h[posProducerID:])),
		epoch:      int16(binary.BigEndian.Uint16(h[posProducerEpoch:])),
		baseSeq:    int32(binary.BigEndian.Uint32(h[posBaseSequence:])),
		count:      int32(binary.BigEndian.Uint32(h[posRecordCount:])),
	}
}

// plausible reports whether a stored header can start a batch at base
// offset want that fits in avail bytes (CRC not checked).
func (h header) plausible(want, avail int64) bool {
	return h.magic == 2 && h.baseOffset == want && h.size >= batchHeaderSize && h.size <= avail &&
		h.count > 0 && h.lastDelta == h.count-1
}

// firstRecordAtOrAfter decodes an uncompressed batch's records and returns
// the offset delta and timestamp of the first record with timestamp >= ts.
func firstRecordAtOrAfter(batch []byte, ts int64) (delta int32, stamp int64, ok bool) {
	h := parseHeader(batch)
	rec := batch[batchHeaderSize:]
	for i := int32(0); i < h.count && len(rec) > 0; i++ {
		length, n := binary.Varint(rec)
		if n <= 0 || length < 0 || int64(len(rec)-n) < length {
			return 0, 0, false
		}
		body := rec[n : n+int(length)]
		rec = rec[n+int(length):]
		if len(body) < 1 {
			return 0, 0, false
		}
		tsDelta, m := binary.Varint(body[1:])
		if m <= 0 {
			return 0, 0, false
		}
		offDelta, k := binary.Varint(body[1+m:])
		if k <= 0 {
			return 0, 0, false
		}
		if t := h.baseTs + tsDelta; t >= ts {
			return int32(offDelta), t, true
		}
	}
	return 0, 0, false
}
