package log

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// filesUnder counts this process's descriptors open on segment files
// under dir (everything but the flock-ed .lock), from /proc/self/fd: the
// kernel's view, not the store's.
func filesUnder(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, dir+"/") && l != filepath.Join(dir, lockName) {
			n++
		}
	}
	return n
}

// mappingsUnder counts mappings of files under dir, from /proc/self/maps.
func mappingsUnder(t testing.TB, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), " "+dir+"/")
}

// waitFiles waits up to 3 s (the cap is enforced four times a second) for
// the descriptors under dir to be at most limit, and returns the count.
func waitFiles(t testing.TB, dir string, limit int) int {
	t.Helper()
	n := filesUnder(t, dir)
	for deadline := time.Now().Add(3 * time.Second); n > limit && time.Now().Before(deadline); n = filesUnder(t, dir) {
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// TestIdlePartitionsWithinFileCap: 3,000 idle partitions hold no more
// descriptors than MaxOpenSegmentFiles, during creation, while idle and
// after a restart; a read or an append reopens a partition on demand and
// sees every byte.
func TestIdlePartitionsWithinFileCap(t *testing.T) {
	cases := []struct {
		mode         ProduceMode
		parts, limit int
	}{
		{ProduceWrite, 3000, 200}, // ~30 s here: 3,000 directories created, synced, sealed and reopened
		{ProduceMmap, 300, 60},
	}
	if testing.Short() {
		cases[0].parts = 300
	}
	for _, tc := range cases {
		parts, limit := tc.parts, tc.limit
		t.Run(fmt.Sprintf("%s/%d", tc.mode, parts), func(t *testing.T) {
			mode := tc.mode
			dir := t.TempDir()
			cfg := testConfig()
			cfg.MaxOpenSegmentFiles, cfg.Produce, cfg.SegmentBytes = limit, mode, 4096
			s := openStore(t, dir, cfg)
			if err := s.CreateTopic("many", int32(parts)); err != nil {
				t.Fatal(err)
			}
			if n := filesUnder(t, dir); n > limit+2 { // what the tick has not caught yet
				t.Errorf("%d descriptors under the data dir right after creating %d partitions, cap %d", n, parts, limit)
			}
			// Data in partitions spread over the topic, several segments
			// in one of them.
			sent := map[int32][][]byte{}
			mid, last := int32(parts/2), int32(parts-1)
			for _, id := range []int32{0, 1, mid, last} {
				p := mustPartition(t, s, "many", id)
				for i := range map[int32]int{mid: 40}[id] + 2 {
					b := makeBatch(spec(3, fmt.Sprintf("%d-%d", id, i)))
					sent[id] = append(sent[id], clone(b))
					mustAppend(t, p, b)
				}
			}
			if segs := mustPartition(t, s, "many", mid).Stats().Segments; segs < 3 {
				t.Fatalf("partition %d has %d segments, want several", mid, segs)
			}
			if n := waitFiles(t, dir, limit); n > limit {
				t.Errorf("%d descriptors under the data dir with %d idle partitions, cap %d", n, parts, limit)
			}
			t.Logf("%d idle partitions: %d descriptors and %d mappings under the data dir (cap %d)", parts, filesUnder(t, dir), mappingsUnder(t, dir), limit)
			for id, want := range sent { // wakes them
				got := readAll(t, mustPartition(t, s, "many", id), 0, 1<<20)
				if len(got) != len(want) {
					t.Fatalf("partition %d: read %d batches after hibernation, want %d", id, len(got), len(want))
				}
				for i := range got {
					if !sameExceptOwned(got[i].bytes, want[i]) {
						t.Fatalf("partition %d batch %d differs after hibernation", id, i)
					}
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, dir, cfg)
			defer s.Close()
			if n := waitFiles(t, dir, limit); n > limit {
				t.Errorf("%d descriptors under the data dir after a restart with %d partitions, cap %d", n, parts, limit)
			}
			if got := readAll(t, mustPartition(t, s, "many", last), 0, 1<<20); len(got) != len(sent[last]) {
				t.Errorf("partition %d after restart: %d batches, want %d", last, len(got), len(sent[last]))
			}
		})
	}
}

// TestHibernateKeepsOutstandingReads: a partition whose read result is
// not released keeps its files; released, it hibernates at the next check.
func TestHibernateKeepsOutstandingReads(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.MaxOpenSegmentFiles = 2
	s := openStore(t, dir, cfg)
	defer s.Close()
	if err := s.CreateTopic("a", 2); err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, s, "a", 0)
	mustAppend(t, p, makeBatch(spec(2, "x")))
	mustAppend(t, mustPartition(t, s, "a", 1), makeBatch(spec(2, "y")))
	res, err := p.Read(0, 1<<20)
	if err != nil || len(res.Slices) != 1 {
		t.Fatalf("read: %v %+v", err, res)
	}
	time.Sleep(600 * time.Millisecond)
	if p.cold.Load() {
		t.Fatal("a partition with an outstanding read was hibernated")
	}
	buf := make([]byte, res.Slices[0].Len)
	if _, err := res.Slices[0].File.ReadAt(buf, res.Slices[0].Pos); err != nil {
		t.Fatalf("outstanding slice unreadable: %v", err)
	}
	res.Release()
	mustAppend(t, mustPartition(t, s, "a", 1), makeBatch(spec(2, "z"))) // a-1 is now the recent one
	deadline := time.Now().Add(3 * time.Second)
	for !p.cold.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !p.cold.Load() {
		t.Fatal("released partition never hibernated under a cap of 2 files")
	}
}

// TestHibernateRace: appends and reads on partitions that a tiny cap keeps
// hibernating and waking (run with -race): nothing fails, nothing is lost.
func TestHibernateRace(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.MaxOpenSegmentFiles, cfg.SegmentBytes = 2, 2048
	s := openStore(t, dir, cfg)
	defer s.Close()
	if err := s.CreateTopic("r", 4); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // hibernate far more often than the background tick
		for {
			select {
			case <-stop:
				return
			default:
				s.enforceOpenCap()
			}
		}
	}()
	for id := range int32(4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := mustPartition(t, s, "r", id)
			var want [][]byte
			for i := range 150 {
				b := makeBatch(spec(2, fmt.Sprintf("%d-%d", id, i)))
				want = append(want, clone(b))
				if _, err := p.Append(b); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				res, err := p.Read(0, 1<<20)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				res.Release()
			}
			got := readAll(t, p, 0, 1<<20)
			if len(got) != len(want) {
				t.Errorf("partition %d: %d batches, want %d", id, len(got), len(want))
				return
			}
			for i := range got {
				if !bytes.Equal(got[i].bytes[61:], want[i][61:]) { // records after the header
					t.Errorf("partition %d batch %d differs", id, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
}
