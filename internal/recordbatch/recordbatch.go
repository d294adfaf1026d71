// Package recordbatch is the one definition of Kafka's v2 RecordBatch
// header (KIP-98; magic 2): where each field sits, and a read-only view of
// a header's bytes. The broker's log (validation, recovery), the Fetch
// client in internal/kfetch and bench's batch builder all use it.
//
//	baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 |
//	magic int8 | crc uint32 | attributes int16 | lastOffsetDelta int32 |
//	baseTimestamp int64 | maxTimestamp int64 | producerId int64 |
//	producerEpoch int16 | baseSequence int32 | recordCount int32 | records
//
// All fields are big endian. The CRC-32C (Castagnoli) covers everything
// from the attributes to the end of the batch.
package recordbatch

import "encoding/binary"

// Field positions within the header, and its size.
const (
	PosBaseOffset      = 0
	PosBatchLength     = 8
	PosLeaderEpoch     = 12
	PosMagic           = 16
	PosCRC             = 17
	PosAttributes      = 21
	PosLastOffsetDelta = 23
	PosBaseTimestamp   = 27
	PosMaxTimestamp    = 35
	PosProducerID      = 43
	PosProducerEpoch   = 51
	PosBaseSequence    = 53
	PosRecordCount     = 57
	HeaderSize         = 61
	// LogOverhead is the part of the header batchLength does not count
	// (baseOffset and batchLength themselves).
	LogOverhead = 12
	// Magic is the only format version copyscope reads and writes.
	Magic = 2
)

// Header is a view of a batch's first HeaderSize (or more) bytes; its
// methods panic on a shorter slice, so check the length first.
type Header []byte

// BaseOffset is the offset of the batch's first record.
func (h Header) BaseOffset() int64 { return int64(binary.BigEndian.Uint64(h[PosBaseOffset:])) }

// Length is batchLength: the batch's size less LogOverhead.
func (h Header) Length() int64 { return int64(int32(binary.BigEndian.Uint32(h[PosBatchLength:]))) }

// Size is the whole batch's size in bytes, header included, as the header
// claims it (check it against Length() >= HeaderSize-LogOverhead).
func (h Header) Size() int64 { return h.Length() + LogOverhead }

// MagicByte is the format version.
func (h Header) MagicByte() byte { return h[PosMagic] }

// CRC is the stored CRC-32C of the bytes from PosAttributes on.
func (h Header) CRC() uint32 { return binary.BigEndian.Uint32(h[PosCRC:]) }

// LastOffsetDelta is the last record's offset less BaseOffset.
func (h Header) LastOffsetDelta() int32 {
	return int32(binary.BigEndian.Uint32(h[PosLastOffsetDelta:]))
}

// NextOffset is the offset after the batch's last record.
func (h Header) NextOffset() int64 { return h.BaseOffset() + int64(h.LastOffsetDelta()) + 1 }

// ShorterThanHeader reports whether the claimed length cannot even hold
// the header: a corrupt batch.
func (h Header) ShorterThanHeader() bool { return h.Length() < HeaderSize-LogOverhead }
