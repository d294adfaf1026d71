package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestRoundTripAndReopen(t *testing.T) {
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		for _, fs := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
			t.Run(mode.String()+"/"+fs.String(), func(t *testing.T) {
				dir := t.TempDir()
				cfg := testConfig()
				cfg.Produce, cfg.Fsync, cfg.FsyncInterval = mode, fs, 10*time.Millisecond
				s := openStore(t, dir, cfg)
				if err := s.CreateTopic("t", 2); err != nil {
					t.Fatal(err)
				}
				p := mustPartition(t, s, "t", 1)
				var sent [][]byte
				var next int64
				for i := 0; i < 60; i++ {
					b := makeBatch(spec(1+i%7, fmt.Sprintf("b%d", i)))
					sent = append(sent, clone(b))
					r := mustAppend(t, p, b)
					if r.BaseOffset != next || r.LastOffset != next+int64(i%7) || r.Duplicate || r.LogAppendTime != -1 {
						t.Fatalf("append %d: %+v, want base %d", i, r, next)
					}
					next = r.LastOffset + 1
				}
				check := func(p *Partition) {
					t.Helper()
					got := readAll(t, p, 0, 1<<20)
					if len(got) != len(sent) {
						t.Fatalf("read %d batches, sent %d", len(got), len(sent))
					}
					for i := range got {
						if !sameExceptOwned(got[i].bytes, sent[i]) {
							t.Fatalf("batch %d differs from what was produced", i)
						}
					}
					if p.EndOffset() != next || p.StartOffset() != 0 {
						t.Fatalf("offsets [%d,%d), want [0,%d)", p.StartOffset(), p.EndOffset(), next)
					}
				}
				check(p)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openStore(t, dir, cfg)
				defer s.Close()
				if got := s.Topics(); got["t"] != 2 || len(got) != 1 {
					t.Fatalf("topics after reopen %v", got)
				}
				check(mustPartition(t, s, "t", 1))
				if e := mustPartition(t, s, "t", 0).EndOffset(); e != 0 {
					t.Fatalf("untouched partition end %d", e)
				}
			})
		}
	}
}

func TestRollAndIndexLookups(t *testing.T) {
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes, cfg.IndexIntervalBytes, cfg.Produce = 8192, 700, mode
			s := openStore(t, dir, cfg)
			defer s.Close()
			if err := s.CreateTopic("roll", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "roll", 0)
			for i := 0; i < 200; i++ {
				mustAppend(t, p, makeBatch(spec(1+i%5, fmt.Sprint(i))))
			}
			st := p.Stats()
			logs := segFiles(t, filepath.Join(dir, "roll-0"), ".log")
			if st.Segments < 10 || len(logs) != st.Segments {
				t.Fatalf("%d segments (%d files), want >= 10 after %d bytes", st.Segments, len(logs), st.Bytes)
			}
			for _, l := range logs {
				if n := filepath.Base(l); len(n) != 24 {
					t.Fatalf("segment name %q is not 20 digits + .log", n)
				}
				if sz := fileSize(t, l); sz > cfg.SegmentBytes {
					t.Fatalf("sealed segment %s has %d bytes > %d", l, sz, cfg.SegmentBytes)
				}
			}
			// Every offset resolves to the batch holding it, in any segment.
			var buf [batchHeaderSize]byte
			for off := int64(0); off < p.EndOffset(); off++ {
				res, err := p.Read(off, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Slices) != 1 {
					t.Fatalf("Read(%d, 1) gave %d slices, want exactly one whole batch", off, len(res.Slices))
				}
				sl := res.Slices[0]
				if _, err := sl.File.ReadAt(buf[:], sl.Pos); err != nil {
					t.Fatal(err)
				}
				h := parseHeader(buf[:])
				if off < h.baseOffset || off > h.baseOffset+int64(h.lastDelta) || h.size != sl.Len {
					t.Fatalf("Read(%d) returned batch [%d,%d] of %d bytes, slice %d bytes", off, h.baseOffset, h.baseOffset+int64(h.lastDelta), h.size, sl.Len)
				}
				res.Release()
			}
			// A large read spans segments with whole batches.
			res, err := p.Read(0, 40000)
			if err != nil {
				t.Fatal(err)
			}
			var total int64
			for _, sl := range res.Slices {
				total += sl.Len
			}
			if len(res.Slices) < 3 || total > 40000 || total < 40000-2*8192 {
				t.Fatalf("Read(0, 40000): %d slices, %d bytes", len(res.Slices), total)
			}
			res.Release()
			if n := len(readAll(t, p, 0, 3000)); n != 200 {
				t.Fatalf("read back %d batches, want 200", n)
			}
		})
	}
}

func TestReadBounds(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	defer s.Close()
	if err := s.CreateTopic("r", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "r", 0)
	res, err := p.Read(0, 100)
	if err != nil || len(res.Slices) != 0 || res.HighWatermark != 0 {
		t.Fatalf("empty log read: %+v, %v", res, err)
	}
	big := makeBatch(spec(20, "big")) // > 2000 bytes
	mustAppend(t, p, clone(big))
	mustAppend(t, p, makeBatch(spec(1, "small")))
	tests := []struct {
		name     string
		offset   int64
		max      int32
		wantLen  int64
		wantErr  error
		wantNone bool
	}{
		{"first batch exceeds max: still whole", 0, 10, int64(len(big)), nil, false},
		{"offset inside first batch", 7, 10, int64(len(big)), nil, false},
		{"zero max bytes", 3, 0, int64(len(big)), nil, false},
		{"end offset is empty", 21, 1000, 0, nil, true},
		{"beyond end", 22, 1000, 0, ErrOffsetOutOfRange, false},
		{"negative", -1, 1000, 0, ErrOffsetOutOfRange, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := p.Read(tc.offset, tc.max)
			defer res.Release()
			if tc.wantErr != nil {
				requireErr(t, err, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNone {
				if len(res.Slices) != 0 {
					t.Fatalf("got %d slices, want none", len(res.Slices))
				}
				return
			}
			if len(res.Slices) != 1 || res.Slices[0].Len != tc.wantLen || res.HighWatermark != 21 {
				t.Fatalf("got %+v, want one slice of %d", res, tc.wantLen)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		bytes   int64
		age     time.Duration
		oldTs   bool // first segments carry old timestamps
		wantDel bool
	}{
		{"bytes", 20000, 0, false, true},
		{"age", -1, time.Hour, true, true},
		{"age keeps recent", -1, time.Hour, false, false},
		{"unlimited", -1, 0, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes, cfg.RetentionBytes, cfg.RetentionAge = 8192, tc.bytes, tc.age
			s := openStore(t, dir, cfg)
			defer s.Close()
			if err := s.CreateTopic("ret", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "ret", 0)
			for i := 0; i < 100; i++ {
				sp := spec(3, fmt.Sprint(i))
				sp.baseTs = now.UnixMilli()
				if tc.oldTs && i < 80 {
					sp.baseTs = now.Add(-2 * time.Hour).UnixMilli()
				}
				mustAppend(t, p, makeBatch(sp))
			}
			p.appendMu.Lock()
			p.waitFlush() // background flushes of rolled segments hold references too
			p.appendMu.Unlock()
			before := p.Stats()
			// An outstanding read of the oldest data must survive deletion.
			held, err := p.Read(0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			want := make([][]byte, len(held.Slices))
			for i, sl := range held.Slices {
				want[i] = make([]byte, sl.Len)
				if _, err := sl.File.ReadAt(want[i], sl.Pos); err != nil {
					t.Fatal(err)
				}
			}
			n, err := p.Retain(now)
			if err != nil {
				t.Fatal(err)
			}
			after := p.Stats()
			if !tc.wantDel {
				if n != 0 || after != before {
					t.Fatalf("retention deleted %d segments, want none", n)
				}
				held.Release()
				return
			}
			if n == 0 || after.Segments != before.Segments-n || after.StartOffset == 0 || after.EndOffset != before.EndOffset {
				t.Fatalf("retention: before %+v after %+v deleted %d", before, after, n)
			}
			if after.Segments < 1 || len(segFiles(t, filepath.Join(dir, "ret-0"), ".log")) != after.Segments {
				t.Fatalf("segment files do not match %d live segments", after.Segments)
			}
			if tc.bytes >= 0 && after.Bytes < tc.bytes {
				t.Fatalf("kept %d bytes, below retention %d", after.Bytes, tc.bytes)
			}
			for i, sl := range held.Slices {
				got := make([]byte, sl.Len)
				if _, err := sl.File.ReadAt(got, sl.Pos); err != nil || !bytes.Equal(got, want[i]) {
					t.Fatalf("held slice %d unreadable after deletion: %v", i, err)
				}
			}
			held.Release()
			if _, err := held.Slices[0].File.Stat(); err == nil {
				t.Fatal("deleted segment file still open after Release")
			}
			_, err = p.Read(0, 100)
			requireErr(t, err, ErrOffsetOutOfRange)
			if got := readAll(t, p, after.StartOffset, 1<<20); len(got) == 0 {
				t.Fatal("nothing readable after retention")
			}
			if tc.age == 0 {
				return
			}
			// The active segment is never deleted.
			for range 3 {
				if _, err := p.Retain(now.Add(1000 * time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			if st := p.Stats(); st.Segments != 1 || st.EndOffset != before.EndOffset {
				t.Fatalf("after aggressive retention: %+v", st)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	type damage func(t *testing.T, pdir string, dataEnd int64) // applied after a crash; dataEnd: bytes in the active segment
	lastLog := func(t *testing.T, pdir string) string {
		logs := segFiles(t, pdir, ".log")
		return logs[len(logs)-1]
	}
	tests := []struct {
		name    string
		damage  damage
		clean   bool  // Close instead of crash before damaging
		lost    int64 // records expected lost from the end
		anyLost bool  // a middle corruption: some records lost, exact count not fixed
	}{
		{"crash, no damage", nil, false, 0, false},
		{"clean close, no damage", nil, true, 0, false},
		{"torn tail", func(t *testing.T, pdir string, dataEnd int64) {
			l := lastLog(t, pdir)
			if err := os.Truncate(l, dataEnd-10); err != nil {
				t.Fatal(err)
			}
		}, false, 4, false},
		{"garbage after tail", func(t *testing.T, pdir string, dataEnd int64) {
			f, err := os.OpenFile(lastLog(t, pdir), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteAt(bytes.Repeat([]byte{0xab}, 100), dataEnd)
			_ = f.Close()
		}, false, 0, false},
		{"flipped byte in last batch", func(t *testing.T, pdir string, dataEnd int64) {
			flip(t, lastLog(t, pdir), dataEnd-20)
		}, false, 4, false},
		{"flipped byte mid active segment", func(t *testing.T, pdir string, dataEnd int64) {
			flip(t, lastLog(t, pdir), dataEnd/2)
		}, false, 0, true},
		{"missing index of sealed segment", func(t *testing.T, pdir string, _ int64) {
			if err := os.Remove(segFiles(t, pdir, ".index")[1]); err != nil {
				t.Fatal(err)
			}
		}, true, 0, false},
		{"stale index of sealed segment", func(t *testing.T, pdir string, _ int64) {
			// entries of another layout: the second points inside a batch
			stale := make([]byte, 2*indexEntrySize)
			binary.BigEndian.PutUint32(stale[8:], 3)
			binary.BigEndian.PutUint32(stale[12:], 37)
			if err := os.WriteFile(segFiles(t, pdir, ".index")[2], stale, 0o644); err != nil {
				t.Fatal(err)
			}
		}, true, 0, false},
		{"sealed segment with an untrimmed zero tail", func(t *testing.T, pdir string, _ int64) {
			l := segFiles(t, pdir, ".log")[1]
			if err := os.Truncate(l, fileSize(t, l)+8192); err != nil { // a crash between roll and trim (mmap)
				t.Fatal(err)
			}
		}, false, 0, false},
		{"no producer snapshots: every segment scanned", func(t *testing.T, pdir string, _ int64) {
			for _, f := range segFiles(t, pdir, ".snapshot") {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}, false, 0, false},
		{"corrupt sealed segment without recovery point: later segments dropped", func(t *testing.T, pdir string, _ int64) {
			for _, f := range segFiles(t, pdir, ".snapshot") {
				_ = os.Remove(f)
			}
			flip(t, segFiles(t, pdir, ".log")[1], 5000)
		}, false, 0, true},
		{"truncated index of sealed segment", func(t *testing.T, pdir string, _ int64) {
			idx := segFiles(t, pdir, ".index")[1]
			if err := os.Truncate(idx, fileSize(t, idx)-3); err != nil {
				t.Fatal(err)
			}
		}, false, 0, false},
	}
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		for _, tc := range tests {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := testConfig()
				cfg.SegmentBytes, cfg.Produce = 16384, mode
				s := openStore(t, dir, cfg)
				if err := s.CreateTopic("rec", 1); err != nil {
					t.Fatal(err)
				}
				p := mustPartition(t, s, "rec", 0)
				var sent [][]byte
				for i := 0; i < 120; i++ {
					b := makeBatch(spec(4, fmt.Sprint(i)))
					sent = append(sent, clone(b))
					mustAppend(t, p, b)
				}
				end := p.EndOffset()
				dataEnd := p.segs[len(p.segs)-1].size
				if p.Stats().Segments < 4 {
					t.Fatalf("only %d segments", p.Stats().Segments)
				}
				if tc.clean {
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
				} else {
					crash(s)
				}
				pdir := filepath.Join(dir, "rec-0")
				if tc.damage != nil {
					tc.damage(t, pdir, dataEnd)
				}
				s = openStore(t, dir, cfg)
				defer s.Close()
				p = mustPartition(t, s, "rec", 0)
				got := readAll(t, p, 0, 1<<20)
				for i := range got {
					if !sameExceptOwned(got[i].bytes, sent[i]) {
						t.Fatalf("batch %d differs after recovery", i)
					}
				}
				switch {
				case tc.anyLost:
					if p.EndOffset() >= end || p.EndOffset() == 0 {
						t.Fatalf("end %d after mid corruption, want in (0,%d)", p.EndOffset(), end)
					}
				case p.EndOffset() != end-tc.lost:
					t.Fatalf("end offset %d after recovery, want %d", p.EndOffset(), end-tc.lost)
				}
				// The recovered log takes appends at the right offset and
				// its index serves every offset.
				r := mustAppend(t, p, makeBatch(spec(2, "after")))
				if r.BaseOffset != p.EndOffset()-2 {
					t.Fatalf("append after recovery at %d", r.BaseOffset)
				}
				idxs := segFiles(t, pdir, ".index")
				if len(idxs) != len(segFiles(t, pdir, ".log")) {
					t.Fatalf("%d index files for %d segments", len(idxs), len(segFiles(t, pdir, ".log")))
				}
				for _, idx := range idxs[:len(idxs)-1] {
					b, err := os.ReadFile(idx)
					if err != nil || len(b)%indexEntrySize != 0 || len(b) < 2*indexEntrySize || binary.BigEndian.Uint32(b[12:]) == 37 {
						t.Fatalf("index %s not rebuilt: %d bytes, %v", idx, len(b), err)
					}
				}
				if n := len(readAll(t, p, 0, 5000)); n != len(got)+1 {
					t.Fatalf("read %d batches, want %d", n, len(got)+1)
				}
			})
		}
	}
}

func flip(t *testing.T, name string, at int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestIdempotentProducer(t *testing.T) {
	prod := func(epoch int16, seq int32, n int) []byte {
		sp := spec(n, fmt.Sprintf("e%ds%d", epoch, seq))
		sp.pid, sp.epoch, sp.seq = 42, epoch, seq
		return makeBatch(sp)
	}
	for _, restart := range []string{"none", "clean", "crash"} {
		t.Run(restart, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes = 4096 // rolls write producer snapshots
			s := openStore(t, dir, cfg)
			if err := s.CreateTopic("idem", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "idem", 0)
			var seq int32
			for i := 0; i < 30; i++ {
				mustAppend(t, p, prod(0, seq, 3))
				seq += 3
			}
			end := p.EndOffset()
			switch restart {
			case "clean":
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openStore(t, dir, cfg)
			case "crash":
				crash(s)
				s = openStore(t, dir, cfg)
			}
			defer s.Close()
			p = mustPartition(t, s, "idem", 0)
			steps := []struct {
				name    string
				batch   []byte
				wantErr error
				dup     bool
				base    int64
			}{
				{"retry of last batch", prod(0, seq-3, 3), nil, true, end - 3},
				{"retry of an older in-flight batch", prod(0, seq-9, 3), nil, true, end - 9},
				{"gap", prod(0, seq+1, 3), ErrOutOfOrderSequence, false, 0},
				{"next in sequence", prod(0, seq, 3), nil, false, end},
				{"new epoch not at 0", prod(1, 5, 1), ErrOutOfOrderSequence, false, 0},
				{"new epoch at 0", prod(1, 0, 2), nil, false, end + 3},
				{"stale epoch", prod(0, seq+3, 1), ErrInvalidProducerEpoch, false, 0},
				{"unknown producer any sequence", func() []byte {
					sp := spec(1, "other")
					sp.pid, sp.epoch, sp.seq = 7, 0, 100
					return makeBatch(sp)
				}(), nil, false, end + 5},
				{"non-idempotent", makeBatch(spec(1, "plain")), nil, false, end + 6},
			}
			for _, st := range steps {
				before := p.Stats()
				r, err := p.Append(st.batch)
				if st.wantErr != nil {
					requireErr(t, err, st.wantErr)
					if p.Stats() != before {
						t.Fatalf("%s: rejected batch changed the log", st.name)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if r.Duplicate != st.dup || r.BaseOffset != st.base {
					t.Fatalf("%s: got %+v, want dup=%v base=%d", st.name, r, st.dup, st.base)
				}
				if st.dup && p.Stats() != before {
					t.Fatalf("%s: duplicate was written", st.name)
				}
			}
		})
	}
}

func TestLogAppendTime(t *testing.T) {
	cfg := testConfig()
	cfg.LogAppendTime = true
	s := openStore(t, t.TempDir(), cfg)
	defer s.Close()
	if err := s.CreateTopic("lat", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "lat", 0)
	before := time.Now().UnixMilli()
	sent := makeBatch(spec(5, "x"))
	r := mustAppend(t, p, clone(sent))
	if r.LogAppendTime < before || r.LogAppendTime > time.Now().UnixMilli() {
		t.Fatalf("LogAppendTime %d not the broker clock", r.LogAppendTime)
	}
	got := readAll(t, p, 0, 1<<20) // validates the CRC of what is stored
	h := parseHeader(got[0].bytes)
	if h.maxTs != r.LogAppendTime || h.attrs&attrLogAppendTime == 0 {
		t.Fatalf("stored max timestamp %d attrs %#x, want %d with the LogAppendTime bit", h.maxTs, h.attrs, r.LogAppendTime)
	}
	if !bytes.Equal(got[0].bytes[posBaseTimestamp:posMaxTimestamp], sent[posBaseTimestamp:posMaxTimestamp]) ||
		!bytes.Equal(got[0].bytes[posProducerID:], sent[posProducerID:]) {
		t.Fatal("LogAppendTime rewrote more than max timestamp and attributes")
	}
	var kb kmsg.RecordBatch
	if err := kb.ReadFrom(got[0].bytes); err != nil {
		t.Fatalf("franz-go cannot decode the stored batch: %v", err)
	}
	if kb.Attributes&0x08 == 0 || kb.MaxTimestamp != r.LogAppendTime {
		t.Fatalf("franz-go sees %+v", kb)
	}
}

func TestValidateRejects(t *testing.T) {
	good := makeBatch(spec(3, "v"))
	mut := func(f func(b []byte) []byte) []byte { return f(clone(good)) }
	recrc := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[posCRC:], crcOf(b))
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:40]},
		{"truncated batch", good[:len(good)-1]},
		{"trailing bytes", append(clone(good), 1, 2, 3)},
		{"bad crc", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"magic 1", mut(func(b []byte) []byte { b[posMagic] = 1; return b })},
		{"length too small", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[posBatchLength:], 10); return b })},
		{"negative length", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[posBatchLength:], 0x80000000); return b })},
		{"zero records", mut(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[posRecordCount:], 0)
			binary.BigEndian.PutUint32(b[posLastOffsetDelta:], 0xffffffff)
			return recrc(b)
		})},
		{"count/delta mismatch", mut(func(b []byte) []byte { binary.BigEndian.PutUint32(b[posLastOffsetDelta:], 7); return recrc(b) })},
		{"unknown codec", mut(func(b []byte) []byte { b[posAttributes+1] |= 7; return recrc(b) })},
		{"second batch bad", append(clone(good), mut(func(b []byte) []byte { b[70] ^= 1; return b })...)},
	}
	s := openStore(t, t.TempDir(), testConfig())
	defer s.Close()
	if err := s.CreateTopic("v", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "v", 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Append(tc.in)
			requireErr(t, err, ErrCorruptMessage)
			if st := p.Stats(); st.Bytes != 0 || st.EndOffset != 0 {
				t.Fatalf("rejected append wrote: %+v", st)
			}
		})
	}
	cfg := testConfig()
	cfg.SegmentBytes = 2048
	s2 := openStore(t, t.TempDir(), cfg)
	defer s2.Close()
	if err := s2.CreateTopic("v", 1); err != nil {
		t.Fatal(err)
	}
	_, err := mustPartition(t, s2, "v", 0).Append(makeBatch(spec(30, "huge")))
	requireErr(t, err, ErrRecordTooLarge)
}

func crcOf(b []byte) uint32 {
	var h = b[posAttributes:]
	return crc32c(h)
}

func TestMultiBatchAppend(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	defer s.Close()
	if err := s.CreateTopic("m", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "m", 0)
	a, b := makeBatch(spec(2, "a")), makeBatch(spec(3, "b"))
	r := mustAppend(t, p, append(clone(a), b...))
	if r.BaseOffset != 0 || r.LastOffset != 4 {
		t.Fatalf("multi-batch append %+v", r)
	}
	got := readAll(t, p, 0, 1<<20)
	if len(got) != 2 || got[1].offset != 2 || !sameExceptOwned(got[1].bytes, b) {
		t.Fatalf("multi-batch read back %d batches", len(got))
	}
}

func TestOffsetForTime(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprint("compressed=", compressed), func(t *testing.T) {
			cfg := testConfig()
			cfg.SegmentBytes = 4096
			s := openStore(t, t.TempDir(), cfg)
			defer s.Close()
			if err := s.CreateTopic("ts", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "ts", 0)
			// batch i holds 10 records at 1000*i + 0..9 ms
			for i := 0; i < 40; i++ {
				sp := spec(10, fmt.Sprint(i))
				sp.baseTs = int64(1000 * (i + 1))
				if compressed {
					sp.codec = 1
				}
				mustAppend(t, p, makeBatch(sp))
			}
			tests := []struct{ ts, off, stamp int64 }{
				{0, 0, 1000},
				{1000, 0, 1000},
				{1005, 5, 1005},
				{1009, 9, 1009},
				{1010, 10, 2000},
				{20003, 193, 20003},
				{40009, 399, 40009},
				{40010, -1, -1},
			}
			for _, tc := range tests {
				off, stamp, err := p.OffsetForTime(tc.ts)
				if err != nil {
					t.Fatal(err)
				}
				wantOff, wantStamp := tc.off, tc.stamp
				if compressed && tc.off >= 0 {
					wantOff, wantStamp = tc.off-tc.off%10, (tc.off/10+1)*1000+9
				}
				if off != wantOff || stamp != wantStamp {
					t.Errorf("OffsetForTime(%d) = (%d, %d), want (%d, %d)", tc.ts, off, stamp, wantOff, wantStamp)
				}
			}
		})
	}
}

func TestChanged(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	defer s.Close()
	if err := s.CreateTopic("c", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "c", 0)
	ch := p.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any append")
	default:
	}
	go func() { _, _ = p.Append(makeBatch(spec(1, "c"))) }()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed not closed by an append")
	}
	if p.EndOffset() != 1 {
		t.Fatalf("end %d", p.EndOffset())
	}
}

func TestTopicsAndLock(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testConfig())
	_, err := Open(dir, testConfig())
	requireErr(t, err, ErrLocked)
	if want := fmt.Sprintf("data directory %s is locked by another running broker (pid %d); stop it or use --data to another directory", dir, os.Getpid()); err.Error() != want {
		t.Fatalf("lock error %q, want %q", err, want)
	}
	for _, name := range []string{"../x", strings.Repeat("a", 300), ".", "..", "", "a/b", "sp ace"} {
		requireErr(t, s.CreateTopic(name, 1), ErrInvalidTopic)
	}
	requireErr(t, s.CreateTopic("ok", 0), ErrInvalidPartitions)
	if ents, _ := os.ReadDir(dir); len(ents) != 1 { // only .lock
		t.Fatalf("rejected topics touched the disk: %v", ents)
	}
	if err := s.CreateTopic("a-1", 2); err != nil {
		t.Fatal(err)
	}
	requireErr(t, s.CreateTopic("a-1", 2), ErrTopicExists)
	_, err = s.Partition("a-1", 2)
	requireErr(t, err, ErrUnknownTopicOrPartition)
	p := mustPartition(t, s, "a-1", 1)
	mustAppend(t, p, makeBatch(spec(1, "d")))
	held, err := p.Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTopic("a-1"); err != nil {
		t.Fatal(err)
	}
	requireErr(t, s.DeleteTopic("a-1"), ErrUnknownTopicOrPartition)
	_, err = p.Append(makeBatch(spec(1, "late")))
	requireErr(t, err, ErrUnknownTopicOrPartition)
	buf := make([]byte, held.Slices[0].Len)
	if _, err := held.Slices[0].File.ReadAt(buf, held.Slices[0].Pos); err != nil {
		t.Fatalf("read of deleted topic's held slice: %v", err)
	}
	held.Release()
	if _, err := os.Stat(filepath.Join(dir, "a-1-0")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted topic directory remains: %v", err)
	}
	if err := s.CreateTopic("keep", 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, testConfig())
	defer s.Close()
	if got := s.Topics(); len(got) != 1 || got["keep"] != 3 {
		t.Fatalf("topics after reopen: %v", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(file, "sub"), testConfig())
	if err == nil || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("Open under a regular file: %v", err)
	}
	bad := testConfig()
	bad.SegmentBytes = 10
	if _, err := Open(t.TempDir(), bad); err == nil {
		t.Fatal("Open accepted a 10-byte segment size")
	}
}

func TestConcurrentAppendRead(t *testing.T) {
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := testConfig()
			cfg.SegmentBytes, cfg.Produce = 16384, mode
			cfg.RetentionBytes = 64 << 10
			s := openStore(t, t.TempDir(), cfg)
			defer s.Close()
			if err := s.CreateTopic("cc", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "cc", 0)
			const batches = 400
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < batches/2; i++ {
						if _, err := p.Append(makeBatch(spec(2, fmt.Sprint(w, i)))); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Add(1)
			go func() { // retention racing the readers
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if _, err := p.Retain(time.Now()); err != nil {
						errs <- err
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			for r := 0; r < 3; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					off := int64(0)
					for iter := 0; iter < 100000 && off < 2*batches; iter++ {
						res, err := p.Read(off, 4096)
						if errors.Is(err, ErrOffsetOutOfRange) {
							off = p.StartOffset()
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						for _, sl := range res.Slices {
							buf := make([]byte, sl.Len)
							if _, err := sl.File.ReadAt(buf, sl.Pos); err != nil {
								errs <- err
								return
							}
							infos, err := validateBatches(buf, nil)
							if err != nil {
								errs <- fmt.Errorf("concurrent read at %d: %w", off, err)
								return
							}
							last := infos[len(infos)-1]
							off = int64(binary.BigEndian.Uint64(buf[last.pos:])) + int64(last.lastDelta) + 1
						}
						res.Release()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if p.EndOffset() != 2*batches {
				t.Fatalf("end %d, want %d", p.EndOffset(), 2*batches)
			}
		})
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		for _, recs := range []int{1, 160} { // 160 x 100 B records = one 16 KiB producer batch
			b.Run(fmt.Sprintf("%s/records=%d", mode, recs), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.Produce, cfg.Fsync = mode, FsyncNever
				cfg.SegmentBytes = 256 << 20
				s := openStore(b, b.TempDir(), cfg)
				defer s.Close()
				if err := s.CreateTopic("bench", 1); err != nil {
					b.Fatal(err)
				}
				p := mustPartition(b, s, "bench", 0)
				batch := makeBatch(spec(recs, "bench"))
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := p.Append(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*recs)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open descriptors (%v): fd leak check needs /proc", err)
	}
	return len(ents)
}

// TestNoDescriptorLeak runs a store through rolls, reads, retention, topic
// deletion, a crash-free close and a reopen, and checks that every segment
// file and mapping was released.
func TestNoDescriptorLeak(t *testing.T) {
	before := openFDs(t)
	dir := t.TempDir()
	for _, mode := range []ProduceMode{ProduceWrite, ProduceMmap} {
		cfg := testConfig()
		cfg.SegmentBytes, cfg.RetentionBytes, cfg.Produce = 4096, 20000, mode
		s := openStore(t, dir, cfg)
		for _, topic := range []string{"keep-" + mode.String(), "drop"} {
			if err := s.CreateTopic(topic, 2); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, topic, 1)
			for i := 0; i < 100; i++ {
				mustAppend(t, p, makeBatch(spec(2, fmt.Sprint(i))))
			}
			held, err := p.Read(0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Retain(time.Now()); err != nil {
				t.Fatal(err)
			}
			readAll(t, p, p.StartOffset(), 3000)
			held.Release()
		}
		if err := s.DeleteTopic("drop"); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, dir, testConfig())
	readAll(t, mustPartition(t, s, "keep-write", 1), mustPartition(t, s, "keep-write", 1).StartOffset(), 1<<20)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after: segment files leaked", before, after)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("cannot read /proc/self/maps (%v): mapping leak check skipped", err)
	}
	if strings.Contains(string(maps), dir) {
		t.Fatalf("segment or index mappings of %s remain after Close:\n%s", dir, maps)
	}
}

// TestAgeAfterReopen: a sealed segment whose newest batch is not its last
// keeps its largest timestamp across a clean restart (the index tail walk
// alone would see only the old trailing batches).
func TestAgeAfterReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes, cfg.RetentionAge = 4096, time.Hour
	now := time.Now()
	s := openStore(t, dir, cfg)
	if err := s.CreateTopic("age", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "age", 0)
	for i := 0; i < 40; i++ {
		sp := spec(2, fmt.Sprint(i))
		sp.baseTs = now.Add(-3 * time.Hour).UnixMilli()
		if i == 14 {
			sp.baseTs = now.UnixMilli() // first of segment 1: recent, then old ones in the same segment
		}
		mustAppend(t, p, makeBatch(sp))
	}
	if len(p.segs) < 3 || p.segs[1].base != 28 {
		t.Fatalf("layout changed: segment 1 must start with batch 14 (offset 28)")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, cfg)
	defer s.Close()
	p = mustPartition(t, s, "age", 0)
	n, err := p.Retain(now)
	if err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 28 || n != 1 {
		t.Fatalf("age retention deleted %d segments, log starts at %d; want only the old segment 0 gone (segment 1 holds a batch from now)", n, p.StartOffset())
	}
}

func TestRetentionForgetsProducers(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes, cfg.RetentionBytes = 4096, 0
	s := openStore(t, t.TempDir(), cfg)
	defer s.Close()
	if err := s.CreateTopic("pf", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "pf", 0)
	for pid := int64(1); pid <= 3; pid++ {
		sp := spec(5, fmt.Sprint(pid))
		sp.pid, sp.epoch, sp.seq = pid, 0, 0
		mustAppend(t, p, makeBatch(sp))
	}
	for i := 0; i < 30; i++ {
		mustAppend(t, p, makeBatch(spec(5, fmt.Sprint(i))))
	}
	if len(p.producers) != 3 {
		t.Fatalf("%d producers tracked, want 3", len(p.producers))
	}
	if _, err := p.Retain(time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(p.producers) != 0 || p.StartOffset() == 0 {
		t.Fatalf("after retention to offset %d, %d producers still tracked", p.StartOffset(), len(p.producers))
	}
}

func TestParseFlags(t *testing.T) {
	for _, f := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		got, err := ParseFsync(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFsync(%q) = %v, %v", f.String(), got, err)
		}
	}
	for _, m := range []ProduceMode{ProduceWrite, ProduceMmap} {
		got, err := ParseProduceMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseProduceMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseFsync("sometimes"); err == nil || !strings.Contains(err.Error(), "always, interval or never") {
		t.Errorf("ParseFsync(sometimes): %v", err)
	}
	if _, err := ParseProduceMode("splice"); err == nil || !strings.Contains(err.Error(), "write or mmap") {
		t.Errorf("ParseProduceMode(splice): %v", err)
	}
}

func TestSequenceWrap(t *testing.T) {
	if got := lastSequence(math.MaxInt32-1, 3); got != 1 {
		t.Fatalf("lastSequence wraps to %d, want 1", got)
	}
	s := openStore(t, t.TempDir(), testConfig())
	defer s.Close()
	if err := s.CreateTopic("wrap", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "wrap", 0)
	mk := func(seq int32, n int) []byte {
		sp := spec(n, fmt.Sprint(seq))
		sp.pid, sp.epoch, sp.seq = 9, 0, seq
		return makeBatch(sp)
	}
	mustAppend(t, p, mk(math.MaxInt32-1, 2)) // ends at MaxInt32
	if r := mustAppend(t, p, mk(0, 1)); r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("sequence 0 after MaxInt32: %+v", r)
	}
	_, err := p.Append(mk(5, 1))
	requireErr(t, err, ErrOutOfOrderSequence)
}

// TestBackgroundRetentionAndSync: the store's own loop applies retention
// every RetentionCheck and interval fsync runs without disturbing appends.
func TestBackgroundRetentionAndSync(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes, cfg.RetentionBytes = 4096, 0
	cfg.RetentionCheck, cfg.Fsync, cfg.FsyncInterval = 5*time.Millisecond, FsyncInterval, time.Millisecond
	s := openStore(t, t.TempDir(), cfg)
	defer s.Close()
	if err := s.CreateTopic("bg", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "bg", 0)
	for i := 0; i < 30; i++ {
		mustAppend(t, p, makeBatch(spec(3, fmt.Sprint(i))))
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Segments > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.Segments != 1 || st.StartOffset == 0 || st.EndOffset != 90 {
		t.Fatalf("background retention did not run: %+v", st)
	}
}

// BenchmarkRead measures Read (index lookup, header reads, references):
// SetBytes is the bytes of whole batches returned per call.
func BenchmarkRead(b *testing.B) {
	cfg := testConfig()
	cfg.SegmentBytes, cfg.IndexIntervalBytes = 64<<20, 4096
	s := openStore(b, b.TempDir(), cfg)
	defer s.Close()
	if err := s.CreateTopic("rb", 2); err != nil {
		b.Fatal(err)
	}
	big, small := mustPartition(b, s, "rb", 0), mustPartition(b, s, "rb", 1)
	for i := 0; i < 2000; i++ {
		mustAppend(b, big, makeBatch(spec(160, "r"))) // 16 KiB batches: each one indexed
		mustAppend(b, small, makeBatch(spec(5, "r"))) // 0.5 KiB batches: one in eight indexed
	}
	for _, tc := range []struct {
		name string
		p    *Partition
		max  int32
		at   func(i int) int64
	}{
		// a consumer near the tail: the index points at its batch and the
		// rest of the segment fits, so no header is read at all
		{"tail-16KiB-batches-max-1MiB", big, 1 << 20, func(i int) int64 { return 160 * int64(2000-1-i%4) }},
		{"one-16KiB-batch", big, 1, func(i int) int64 { return int64(i%2000) * 160 }},
		{"one-512B-batch", small, 1, func(i int) int64 { return int64(i%2000) * 5 }},
		{"random-offset-max-1MiB", big, 1 << 20, func(i int) int64 { return int64(uint64(i)*2654435761) % big.EndOffset() }},
		{"random-offset-512B-batches-max-64KiB", small, 64 << 10, func(i int) int64 { return int64(uint64(i)*2654435761) % small.EndOffset() }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var n int64
			for i := 0; i < b.N; i++ {
				res, err := tc.p.Read(tc.at(i), tc.max)
				if err != nil {
					b.Fatal(err)
				}
				for _, sl := range res.Slices {
					n += sl.Len
				}
				res.Release()
			}
			b.SetBytes(n / int64(b.N))
		})
	}
}

// syscr returns the calling thread's read-syscall count (/proc io accounting).
func syscr(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/io")
	if err != nil {
		t.Skipf("cannot read /proc/thread-self/io (%v): syscall count check needs task io accounting", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Skip("no syscr in /proc/thread-self/io")
	return 0
}

// TestReadAtTailReadsNothing: a consumer asking for a batch the index points
// at, with the rest of the segment within its budget, costs no read syscall
// on its thread (the probes count that thread's syscalls per path); a Read
// that must walk headers does read them.
func TestReadAtTailReadsNothing(t *testing.T) {
	cfg := testConfig()
	cfg.IndexIntervalBytes = 4096
	s := openStore(t, t.TempDir(), cfg)
	defer s.Close()
	if err := s.CreateTopic("tail", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "tail", 0)
	for i := 0; i < 20; i++ {
		mustAppend(t, p, makeBatch(spec(50, fmt.Sprint(i)))) // > 4 KiB: every batch indexed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a := syscr(t)
	base := syscr(t) - a // the cost of reading the counter itself
	count := func(off int64, max int32) int64 {
		before := syscr(t)
		for i := 0; i < 10; i++ {
			res, err := p.Read(off, max)
			if err != nil || len(res.Slices) == 0 {
				t.Fatalf("Read(%d): %v", off, err)
			}
			res.Release()
		}
		return syscr(t) - before - base
	}
	if n := count(15*50, 1<<20); n != 0 {
		t.Fatalf("10 tail reads made %d read syscalls, want 0", n)
	}
	if n := count(15*50+7, 1<<20); n != 10 { // mid-batch offset: one header read each
		t.Fatalf("10 mid-batch reads made %d read syscalls, want 10", n)
	}
}

// TestProducerExpiry: an idempotent producer idle longer than
// ProducerExpiration (broker time) is forgotten, also across a restart
// (its last-seen time is in the snapshot); a recent one is kept.
func TestProducerExpiry(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.ProducerExpiration = time.Hour
	s := openStore(t, dir, cfg)
	if err := s.CreateTopic("exp", 1); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "exp", 0)
	batch := func(pid int64, seq int32) []byte {
		sp := spec(2, fmt.Sprint(pid, seq))
		sp.pid, sp.epoch, sp.seq = pid, 0, seq
		return makeBatch(sp)
	}
	mustAppend(t, p, batch(1, 0))
	mustAppend(t, p, batch(2, 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, cfg)
	defer s.Close()
	p = mustPartition(t, s, "exp", 0)
	if r := mustAppend(t, p, batch(1, 0)); !r.Duplicate {
		t.Fatalf("retry within the expiration was not a duplicate: %+v", r)
	}
	if _, err := p.Retain(time.Now().Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(p.producers) != 2 {
		t.Fatalf("%d producers after 30 idle minutes, want 2", len(p.producers))
	}
	mustAppend(t, p, batch(2, 2)) // producer 2 stays active
	p.producers[1].lastTs = time.Now().Add(-2 * time.Hour).UnixMilli()
	if _, err := p.Retain(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.producers[1]; ok || len(p.producers) != 1 {
		t.Fatalf("idle producer 1 not expired (%d tracked)", len(p.producers))
	}
	if r := mustAppend(t, p, batch(1, 0)); r.Duplicate {
		t.Fatal("an expired producer's batch was still treated as a duplicate")
	}
}
