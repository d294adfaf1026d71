package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// startSmallBroker runs a broker whose log rolls every 16 KiB and keeps
// only the active segment of ordinary topics (retention.bytes 1, checked
// every 50 ms); compactMin is the coordinator's compaction threshold.
func startSmallBroker(t *testing.T, dir string, compactMin int64) (*Server, *log.Store, string) {
	t.Helper()
	lc := log.DefaultConfig()
	lc.SegmentBytes, lc.RetentionBytes, lc.RetentionCheck = 16<<10, 1, 50*time.Millisecond
	st, err := log.Open(dir, lc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}}
	cfg.Logf = func(format string, args ...any) { t.Logf("broker: "+format, args...) }
	srv, err := NewServer(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.groups.compactMin, srv.groups.compactEvery = compactMin, 0
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	})
	return srv, st, srv.Addrs()[0].Addr
}

// TestOffsetsLogCompaction commits 2,000 times to 5 groups over a log
// that rolls every 16 KiB and whose retention would keep only the active
// segment: retention must not touch __consumer_offsets, compaction must
// delete its old segments, and after a restart every group has its last
// commit.
func TestOffsetsLogCompaction(t *testing.T) {
	for _, tc := range []struct {
		name       string
		compactMin int64
	}{{"retention only", 1 << 40}, {"compaction", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srv, st, addr := startSmallBroker(t, dir, tc.compactMin)
			cl := newClient(t, addr, kgo.RetryTimeout(10*time.Second))
			createTopic(t, cl, "t", 2)
			ctx := context.Background()
			last := map[string]int64{}
			for i := range 2000 {
				g := fmt.Sprintf("g%d", i%5)
				r := kmsg.NewPtrOffsetCommitRequest()
				r.Group, r.Generation = g, -1
				r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: int64(i)}, {Partition: 1, Offset: int64(i) + 1}}}}
				resp, err := r.RequestWith(ctx, cl)
				if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
					t.Fatalf("commit %d: %v %v", i, err, resp)
				}
				last[g] = int64(i)
			}
			time.Sleep(300 * time.Millisecond) // retention checks and sweeps
			p, err := st.Partition(offsetsTopic, 0)
			if err != nil {
				t.Fatal(err)
			}
			stats := p.Stats()
			t.Logf("%s: %d segments from offset %d to %d", offsetsTopic, stats.Segments, stats.StartOffset, stats.EndOffset)
			if tc.compactMin > 4000 && stats.StartOffset != 0 {
				t.Fatalf("retention cut %s to start at %d", offsetsTopic, stats.StartOffset)
			}
			if tc.compactMin < 4000 && stats.StartOffset == 0 {
				t.Fatalf("compaction deleted nothing of %s's %d segments", offsetsTopic, stats.Segments)
			}
			ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx2)
			st.Close()
			_, _, addr = startSmallBroker(t, dir, tc.compactMin)
			cl = newClient(t, addr, kgo.RetryTimeout(10*time.Second))
			for g, want := range last {
				got := committedOffsets(t, cl, g, "t", 2)
				if got[0] != want || got[1] != want+1 {
					t.Errorf("after restart group %s has %v, want [%d %d]", g, got, want, want+1)
				}
			}
		})
	}
}
