package bench

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/recordbatch"
)

// batchBuilder makes produce batches of fixed-size records. Each batch
// differs (a sequence number in every record value) so that a consumer
// that verifies CRCs checks real content.
type batchBuilder struct {
	table     *crc32.Table
	records   int
	valueSize int
	buf       []byte
	seq       uint64
	// tagged gives every record a tag header for the selectivity sweep
	// (recordTag); useful then adds up, per tag-bucket cut k, the bytes a
	// consumer keeping tags below k wants: each batch holding a match
	// counts its header and its matching records.
	tagged bool
	useful map[int]int64
	// perBatch gives all records of a batch one tag (the batch count's
	// bucket) instead of one per record: matches cluster, as when a
	// producer writes one kind of event at a time, and the broker's tag
	// index can skip whole batches.
	perBatch bool
	batches  uint64
}

func newBatchBuilder(table *crc32.Table, records, valueSize int) *batchBuilder {
	return &batchBuilder{table: table, records: records, valueSize: valueSize}
}

// next returns the next batch; the slice is reused by the following call.
func (b *batchBuilder) next(nowMs int64) []byte {
	buf := b.buf[:0]
	buf = binary.BigEndian.AppendUint64(buf, 0) // baseOffset: the log assigns it
	buf = binary.BigEndian.AppendUint32(buf, 0) // batchLength, patched
	buf = binary.BigEndian.AppendUint32(buf, 0) // partitionLeaderEpoch
	buf = append(buf, 2)                        // magic
	buf = binary.BigEndian.AppendUint32(buf, 0) // crc, patched
	buf = binary.BigEndian.AppendUint16(buf, 0) // attributes: no compression, CreateTime
	buf = binary.BigEndian.AppendUint32(buf, uint32(b.records-1))
	buf = binary.BigEndian.AppendUint64(buf, uint64(nowMs)) // baseTimestamp
	buf = binary.BigEndian.AppendUint64(buf, uint64(nowMs)) // maxTimestamp
	buf = binary.BigEndian.AppendUint64(buf, ^uint64(0))    // producerId -1
	buf = binary.BigEndian.AppendUint16(buf, 0xffff)        // producerEpoch -1
	buf = binary.BigEndian.AppendUint32(buf, 0xffffffff)    // baseSequence -1
	buf = binary.BigEndian.AppendUint32(buf, uint32(b.records))
	var kept [tagBuckets + 1]int64 // bytes of records by tag bucket
	var count [tagBuckets + 1]int
	for i := 0; i < b.records; i++ {
		bucket := recordTag(b.seq)
		if b.perBatch {
			bucket = recordTag(b.batches)
		}
		var body []byte
		body = append(body, 0)                     // record attributes
		body = binary.AppendVarint(body, 0)        // timestampDelta
		body = binary.AppendVarint(body, int64(i)) // offsetDelta
		body = binary.AppendVarint(body, -1)       // key: null
		body = binary.AppendVarint(body, int64(b.valueSize))
		start := len(body)
		body = append(body, make([]byte, b.valueSize)...)
		fillValue(body[start:], b.seq)
		b.seq++ // after recordTag: the tag goes with the value's sequence
		if b.tagged {
			body = binary.AppendVarint(body, 1) // one header
			body = binary.AppendVarint(body, int64(len(log.TagHeader)))
			body = append(body, log.TagHeader...)
			tag := tagName(bucket)
			body = binary.AppendVarint(body, int64(len(tag)))
			body = append(body, tag...)
		} else {
			body = binary.AppendVarint(body, 0) // headers
		}
		n := len(buf)
		buf = binary.AppendVarint(buf, int64(len(body)))
		buf = append(buf, body...)
		kept[bucket] += int64(len(buf) - n)
		count[bucket]++
	}
	for k := range b.useful {
		var bytes int64
		var any bool
		for bk := 0; bk < k; bk++ {
			bytes += kept[bk]
			any = any || count[bk] > 0
		}
		if any {
			b.useful[k] += bytes + recordbatch.HeaderSize
		}
	}
	b.batches++
	binary.BigEndian.PutUint32(buf[recordbatch.PosBatchLength:], uint32(len(buf)-recordbatch.LogOverhead))
	binary.BigEndian.PutUint32(buf[recordbatch.PosCRC:], crc32.Checksum(buf[recordbatch.PosAttributes:], b.table))
	b.buf = buf
	return buf
}

// fillValue writes a cheap, sequence-dependent pattern.
func fillValue(v []byte, seq uint64) {
	x := seq*0x9e3779b97f4a7c15 + 1
	for i := 0; i+8 <= len(v); i += 8 {
		binary.LittleEndian.PutUint64(v[i:], x)
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	for i := len(v) &^ 7; i < len(v); i++ {
		v[i] = byte(x >> (8 * (i & 7)))
	}
}
