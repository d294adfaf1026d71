package log

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzValidateBatch: the validator never panics, never reads past its
// input, and never accepts a batch whose stored CRC-32C is wrong.
func FuzzValidateBatch(f *testing.F) {
	f.Add(makeBatch(spec(1, "a")))
	f.Add(makeBatch(spec(5, "b")))
	f.Add(append(makeBatch(spec(2, "c")), makeBatch(spec(1, "d"))...))
	kb := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: 0, NumRecords: 1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		Records: []byte{0x0c, 0, 0, 0, 1, 2, 'x', 0, 0}}
	raw := kb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[posBatchLength:], uint32(len(raw)-batchLogOverhead))
	binary.BigEndian.PutUint32(raw[posCRC:], crc32c(raw[posAttributes:]))
	f.Add(raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		infos, err := validateBatches(b, nil)
		if err != nil {
			return
		}
		end := 0
		for _, in := range infos {
			if in.pos != end || in.size < batchHeaderSize || in.pos+in.size > len(b) {
				t.Fatalf("accepted batch at %d size %d outside the input of %d", in.pos, in.size, len(b))
			}
			bt := b[in.pos : in.pos+in.size]
			if crc32c(bt[posAttributes:]) != binary.BigEndian.Uint32(bt[posCRC:]) {
				t.Fatal("accepted a batch with a wrong CRC")
			}
			end = in.pos + in.size
		}
		if end != len(b) {
			t.Fatalf("accepted %d of %d bytes", end, len(b))
		}
	})
}
