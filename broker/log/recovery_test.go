package log

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRecoveryReportsTruncation: every cut recovery makes is reported
// (partition, first offset lost, position, bytes, reason), logged, and
// counted; the numbers are checked against the workload's arithmetic and
// the file sizes on disk.
func TestRecoveryReportsTruncation(t *testing.T) {
	const batches, perBatch = 120, 4
	lastSize := int64(len(makeBatch(spec(perBatch, fmt.Sprint(batches-1)))))
	cases := []struct {
		name     string
		mode     ProduceMode
		damage   func(t *testing.T, seg string, dataEnd int64)
		lostRecs int64 // records lost from the end
		cut      func(dataEnd int64) (pos, bytes int64)
		reason   string // in the Reason
		zero     bool
	}{
		{"torn tail", ProduceWrite, func(t *testing.T, seg string, dataEnd int64) {
			if err := os.Truncate(seg, dataEnd-10); err != nil {
				t.Fatal(err)
			}
		}, perBatch, func(e int64) (int64, int64) { return e - lastSize, lastSize - 10 }, "torn write", false},
		{"flipped byte in last batch", ProduceWrite, func(t *testing.T, seg string, dataEnd int64) {
			flip(t, seg, dataEnd-20)
		}, perBatch, func(e int64) (int64, int64) { return e - lastSize, lastSize }, "CRC-32C mismatch", false},
		{"garbage after tail", ProduceWrite, func(t *testing.T, seg string, dataEnd int64) {
			f, err := os.OpenFile(seg, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xab}, 100), dataEnd); err != nil {
				t.Fatal(err)
			}
		}, 0, func(e int64) (int64, int64) { return e, 100 }, "bad magic byte 171", false},
		{"mmap crash: preallocated zeros", ProduceMmap, func(*testing.T, string, int64) {}, 0,
			func(e int64) (int64, int64) { return e, 16384 - e }, "zero-filled", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig()
			cfg.SegmentBytes, cfg.Produce = 16384, tc.mode
			s := openStore(t, dir, cfg)
			if err := s.CreateTopic("rec", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "rec", 0)
			for i := range batches {
				mustAppend(t, p, makeBatch(spec(perBatch, fmt.Sprint(i))))
			}
			end := p.EndOffset()
			act := p.segs[len(p.segs)-1]
			seg, dataEnd := act.logPath, act.size
			crash(s)
			tc.damage(t, seg, dataEnd)
			var logs lines
			cfg.Logf = logs.logf
			s = openStore(t, dir, cfg)
			defer s.Close()
			rec := s.Recovery()
			if len(rec.Truncations) != 1 {
				t.Fatalf("recovery reports %d truncations, want 1: %+v", len(rec.Truncations), rec.Truncations)
			}
			tr := rec.Truncations[0]
			pos, n := tc.cut(dataEnd)
			if tr.Partition != "rec-0" || tr.Segment != seg || tr.FromOffset != end-tc.lostRecs || tr.Position != pos || tr.Bytes != n || tr.Zero != tc.zero || !strings.Contains(tr.Reason, tc.reason) {
				t.Errorf("truncation %+v, want rec-0 %s from offset %d, position %d, %d bytes, zero %v, reason with %q", tr, filepath.Base(seg), end-tc.lostRecs, pos, n, tc.zero, tc.reason)
			}
			if want := map[bool]int64{false: pos, true: cfg.SegmentBytes}[tc.zero]; fileSize(t, seg) != want {
				t.Errorf("segment is %d bytes after recovery, want %d (mmap: preallocated again)", fileSize(t, seg), want)
			}
			if want := map[bool]int64{false: n, true: 0}[tc.zero]; rec.BytesDropped != want {
				t.Errorf("BytesDropped %d, want %d", rec.BytesDropped, want)
			}
			if mustPartition(t, s, "rec", 0).EndOffset() != end-tc.lostRecs {
				t.Errorf("end offset %d after recovery, want %d", mustPartition(t, s, "rec", 0).EndOffset(), end-tc.lostRecs)
			}
			if !logs.has(fmt.Sprintf("recovery truncated rec-0: %d bytes of %s from position %d cut: ", n, filepath.Base(seg), pos)) {
				t.Errorf("no log line for the truncation: %q", logs.l)
			}
		})
	}
}

// TestStartupSetsAsideUnopenable: a partition directory that cannot be
// recovered is moved aside with its files and a log line, and the broker
// serves the rest (the partition starts empty).
func TestStartupSetsAsideUnopenable(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testConfig())
	for _, tc := range []struct {
		topic string
		n     int32
	}{{"a", 1}, {"b", 2}} {
		if err := s.CreateTopic(tc.topic, tc.n); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, mustPartition(t, s, "a", 0), makeBatch(spec(3, "a")))
	mustAppend(t, mustPartition(t, s, "b", 1), makeBatch(spec(3, "b")))
	crash(s)
	// b-1's segment becomes a directory: opening it fails (EISDIR).
	seg := filepath.Join(dir, "b-1", segmentName(0, ".log"))
	if err := os.Rename(seg, seg+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}
	var logs lines
	cfg := testConfig()
	cfg.Logf = logs.logf
	s = openStore(t, dir, cfg)
	defer s.Close()
	if got := s.Topics(); got["a"] != 1 || got["b"] != 2 {
		t.Fatalf("topics after startup %v, want a:1 b:2", got)
	}
	if end := mustPartition(t, s, "a", 0).EndOffset(); end != 3 {
		t.Errorf("a-0 ends at %d, want 3", end)
	}
	if end := mustPartition(t, s, "b", 1).EndOffset(); end != 0 {
		t.Errorf("b-1 ends at %d, want 0 (started empty)", end)
	}
	if _, err := os.Stat(filepath.Join(dir, "b-1"+quarantineSuffix, segmentName(0, ".log")+".saved")); err != nil {
		t.Errorf("b-1's files were not kept aside: %v", err)
	}
	if !logs.has("startup: partition b-1 cannot be recovered") || !logs.has("b-1.quarantined") {
		t.Errorf("no log line says what was set aside and why: %q", logs.l)
	}
}

// TestCreateTopicFailureLeavesNothing: a creation that fails on a full
// disk (mmap segments preallocated on a 1 MiB tmpfs) removes every
// directory it made, and the next start serves the rest.
func TestCreateTopicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("needs to mount a 1 MiB tmpfs as the small disk (root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	cfg := testConfig()
	cfg.Produce, cfg.SegmentBytes = ProduceMmap, 256<<10
	s := openStore(t, dir, cfg)
	if err := s.CreateTopic("small", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic("big", 8); err == nil { // 8 x 256 KiB preallocated > 1 MiB
		t.Fatal("creating 8 preallocated partitions on a 1 MiB disk succeeded")
	} else if !strings.Contains(err.Error(), "nothing of it was kept") {
		t.Errorf("error does not say the creation was undone: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "big-") {
			t.Errorf("failed creation left %s behind", e.Name())
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, cfg)
	defer s.Close()
	if got := s.Topics(); len(got) != 1 || got["small"] != 1 {
		t.Fatalf("topics after restart %v, want only small", got)
	}
}
