package recordbatch

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLayoutAgainstFranz serialises a batch with franz-go's kmsg (an
// independent implementation of the format, which writes each field as
// given) and reads it back through Header.
func TestLayoutAgainstFranz(t *testing.T) {
	b := kmsg.RecordBatch{
		FirstOffset: 1000, Length: HeaderSize - LogOverhead + 40, PartitionLeaderEpoch: -1, Magic: 2, CRC: 0x1234abcd,
		LastOffsetDelta: 4, FirstTimestamp: time.Now().UnixMilli(), MaxTimestamp: time.Now().UnixMilli(),
		ProducerID: 77, ProducerEpoch: 3, FirstSequence: 9, NumRecords: 5, Records: make([]byte, 40),
	}
	raw := b.AppendTo(nil)
	h := Header(raw)
	if len(raw) < HeaderSize {
		t.Fatalf("franz-go batch is %d bytes, shorter than the %d-byte header", len(raw), HeaderSize)
	}
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{"base offset", h.BaseOffset(), 1000},
		{"size", h.Size(), int64(len(raw))},
		{"magic", int64(h.MagicByte()), Magic},
		{"last offset delta", int64(h.LastOffsetDelta()), 4},
		{"next offset", h.NextOffset(), 1005},
		{"crc", int64(h.CRC()), 0x1234abcd},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if h.ShorterThanHeader() {
		t.Error("a whole batch reads as shorter than its header")
	}
}
