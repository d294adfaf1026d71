package kfetch

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"

	"github.com/copyscope/copyscope/internal/recordbatch"
)

// testBroker is the in-process Kafka broker on a log of small segments
// holding topic "t", one listener per transfer path.
type testBroker struct {
	part  *log.Partition
	addrs map[string]string
}

func newTestBroker(t *testing.T, batches int) *testBroker {
	t.Helper()
	lc := log.DefaultConfig()
	lc.SegmentBytes, lc.RetentionBytes, lc.Fsync = 1<<20, 1<<20, log.FsyncNever
	lc.RetentionCheck = time.Hour // the tests call Retain themselves
	store, err := log.Open(t.TempDir(), lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	part, err := store.Partition("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < batches; i++ {
		// Batches of varied sizes, some larger than the bench's buffer
		// pieces, so responses cut batches at every position.
		if _, err := part.Append(testBatch(0, 1+i%7, 1000+(i*7919)%40000)); err != nil {
			t.Fatal(err)
		}
	}
	kc := kafka.DefaultConfig()
	kc.Listeners = nil
	for _, p := range transfer.Names() {
		kc.Listeners = append(kc.Listeners, kafka.Listener{Addr: "127.0.0.1:0", Path: p})
	}
	kc.Registry = transfer.NewRegistry()
	kc.AutoCreateTopics = false
	srv, err := kafka.NewServer(store, kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
	})
	tb := &testBroker{part: part, addrs: map[string]string{}}
	for _, a := range srv.Addrs() {
		tb.addrs[a.Path] = a.Addr
	}
	return tb
}

// logBytes is the log's batches from offset from to its end, as stored.
func (tb *testBroker) logBytes(t *testing.T, from int64) []byte {
	t.Helper()
	var out []byte
	for off := from; off < tb.part.EndOffset(); {
		res, err := tb.part.Read(off, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		start := len(out)
		for _, s := range res.Slices {
			b := make([]byte, s.Len)
			if _, err := io.ReadFull(io.NewSectionReader(s.File, s.Pos, s.Len), b); err != nil {
				res.Release()
				t.Fatal(err)
			}
			out = append(out, b...)
		}
		res.Release()
		if len(out) == start {
			t.Fatalf("log read at %d returned nothing before the end %d", off, tb.part.EndOffset())
		}
		for b := out[start:]; len(b) >= recordbatch.HeaderSize; {
			blen := int(binary.BigEndian.Uint32(b[8:]))
			off = int64(binary.BigEndian.Uint64(b)) + int64(binary.BigEndian.Uint32(b[23:])) + 1
			b = b[recordbatch.LogOverhead+blen:]
		}
	}
	return out
}

// TestBroker consumes the whole log from the real broker on every transfer
// path in both modes, with a small max_bytes so responses end in partial
// batches, and compares the batches received with the log's bytes.
func TestBroker(t *testing.T) {
	tb := newTestBroker(t, 300)
	want := tb.logBytes(t, 0)
	end := tb.part.EndOffset()
	for _, m := range testModes() {
		for _, path := range transfer.Names() {
			t.Run(m.name+"/"+path, func(t *testing.T) {
				var got bytes.Buffer
				cfg := m.cfg
				cfg.Topic, cfg.MaxBytes, cfg.Tap, cfg.Verify = "t", 300<<10, &got, true
				c := m.dial(t, tb.addrs[path], cfg)
				var total int64
				for off := int64(0); off < end; {
					res, err := c.Fetch(off)
					if err != nil {
						t.Fatalf("fetch at %d: %v", off, err)
					}
					if res.ErrCode != 0 || res.Next <= off || res.HighWatermark != end {
						t.Fatalf("fetch at %d: error code %d, next %d, high watermark %d (end %d)", off, res.ErrCode, res.Next, res.HighWatermark, end)
					}
					if m.cfg.Version >= 5 && res.LogStart != 0 {
						t.Fatalf("fetch at %d: log start %d, want 0", off, res.LogStart)
					}
					total += res.Bytes
					off = res.Next
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("received %d batch bytes, the log holds %d, and they differ", got.Len(), len(want))
				}
				if c.Batches != 300 || c.RecordBytes < int64(len(want)) || total <= c.RecordBytes {
					t.Fatalf("%d batches, %d record bytes, %d response bytes; the log holds 300 batches of %d bytes", c.Batches, c.RecordBytes, total, len(want))
				}
			})
		}
	}
}

// TestBrokerOffsetOutOfRange: fetches past the end and before the log
// start (after retention) get OFFSET_OUT_OF_RANGE with no records, and the
// same connection then fetches from the log start.
func TestBrokerOffsetOutOfRange(t *testing.T) {
	tb := newTestBroker(t, 300)
	if n, err := tb.part.Retain(time.Now()); err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments (%v), want some", n, err)
	}
	start, end := tb.part.StartOffset(), tb.part.EndOffset()
	if start == 0 {
		t.Fatal("log start still 0 after retention")
	}
	for _, m := range testModes() {
		t.Run(m.name, func(t *testing.T) {
			cfg := m.cfg
			cfg.Topic = "t"
			c := m.dial(t, tb.addrs["read"], cfg)
			for _, off := range []int64{0, start - 1, end + 1} {
				res, err := c.Fetch(off)
				if err != nil {
					t.Fatalf("fetch at %d: %v", off, err)
				}
				if res.ErrCode != 1 || res.RecordBytes != 0 || res.Next != off {
					t.Fatalf("fetch at %d (log is [%d, %d]): error code %d, %d record bytes, next %d; want 1, none, %d", off, start, end, res.ErrCode, res.RecordBytes, res.Next, off)
				}
				if m.cfg.Version >= 5 && res.LogStart != start {
					t.Fatalf("fetch at %d: log start %d, want %d", off, res.LogStart, start)
				}
			}
			res, err := c.Fetch(start)
			if err != nil || res.ErrCode != 0 || res.Next <= start {
				t.Fatalf("fetch at the log start %d on the same connection: code %d, next %d, %v", start, res.ErrCode, res.Next, err)
			}
		})
	}
}
