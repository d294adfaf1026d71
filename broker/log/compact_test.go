package log

import (
	"testing"
	"time"
)

// TestKeepAllAndDeleteBefore checks a KeepAll partition survives
// retention that deletes an ordinary one, and DeleteBefore deletes only
// whole segments below the offset, never the active one.
func TestKeepAllAndDeleteBefore(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SegmentBytes = 4096
	cfg.RetentionBytes = 1 // retention would keep only the active segment
	s, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, topic := range []string{"kept", "plain"} {
		if err := s.CreateTopic(topic, 1); err != nil {
			t.Fatal(err)
		}
		p, _ := s.Partition(topic, 0)
		if topic == "kept" {
			p.KeepAll()
		}
		for i := 0; i < 40; i++ { // ~1 KiB batches: several segments
			if _, err := p.Append(makeBatch(batchSpec{n: 10, value: 90, pid: -1})); err != nil {
				t.Fatal(err)
			}
		}
	}
	kept, _ := s.Partition("kept", 0)
	plain, _ := s.Partition("plain", 0)
	segs := kept.Stats().Segments
	if segs < 4 {
		t.Fatalf("wrote %d segments, want several", segs)
	}
	if _, err := plain.Retain(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Retain(time.Now()); err != nil {
		t.Fatal(err)
	}
	if plain.Stats().Segments != 1 || kept.Stats().Segments != segs || kept.StartOffset() != 0 {
		t.Fatalf("after retention: plain has %d segments (want 1), kept %d from offset %d (want %d from 0)",
			plain.Stats().Segments, kept.Stats().Segments, kept.StartOffset(), segs)
	}
	end := kept.EndOffset()
	n, err := kept.DeleteBefore(end / 2)
	if err != nil || n == 0 {
		t.Fatalf("DeleteBefore(%d) deleted %d segments: %v", end/2, n, err)
	}
	if start := kept.StartOffset(); start > end/2 || start == 0 {
		t.Fatalf("after DeleteBefore(%d) the partition starts at %d", end/2, start)
	}
	if _, err := kept.DeleteBefore(end + 100); err != nil || kept.Stats().Segments != 1 || kept.EndOffset() != end {
		t.Fatalf("DeleteBefore past the end: %v, %d segments, end %d (want 1, %d)", err, kept.Stats().Segments, kept.EndOffset(), end)
	}
}
