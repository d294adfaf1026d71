package crashtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kgo"
)

const crashRounds = 20

// TestKill9DuringProduce kills the broker at random moments while an
// idempotent acks=-1 producer runs against --fsync always, restarts it, and
// checks every acknowledged record, batch CRCs and offset contiguity.
func TestKill9DuringProduce(t *testing.T) {
	skipShort(t)
	// Small segments make the kills land around rolls and the background
	// flushes of rolled segments too.
	for _, mode := range []string{"write", "mmap"} {
		t.Run("produce-path="+mode, func(t *testing.T) {
			killDuringProduce(t, "--produce-path", mode, "--segment-bytes", "4MiB")
		})
	}
}

func killDuringProduce(t *testing.T, brokerArgs ...string) {
	dir := t.TempDir()
	const topic = "crash"
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 42))
	t.Logf("seed %d", seed)
	acked := map[string]served{} // every acknowledged record, all rounds
	var restarts []time.Duration
	for round := 0; round <= crashRounds; round++ {
		b := startBroker(t, dir, brokerArgs...)
		ready := waitServing(t, b, topic)
		if round > 0 {
			restarts = append(restarts, ready)
		}
		// Everything acknowledged so far is there, once, at its offset.
		c, err := dial(b.addr)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]served{}
		total := 0
		for part := int32(0); part < 2; part++ {
			total += fetchAll(t, c, topic, part, got)
		}
		_ = c.Close()
		for v, at := range acked {
			if g, ok := got[v]; !ok || g != at {
				b.kill(t)
				t.Fatalf("round %d: acknowledged record %q (partition %d offset %d) missing or moved (found %v, %t) after kill -9\n%s",
					round, v, at.part, at.offset, g, ok, b.stderr())
			}
		}
		t.Logf("round %2d: serving %v after start, %d records in the log, %d acknowledged so far", round, ready.Round(time.Millisecond), total, len(acked))
		if round == crashRounds {
			b.kill(t)
			break
		}
		n := produceUntilKilled(t, b, topic, round, time.Duration(50+rng.IntN(450))*time.Millisecond, acked)
		if n == 0 {
			t.Logf("round %d: no record acknowledged before the kill", round)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no record was ever acknowledged: the test proved nothing")
	}
	t.Logf("%d restarts after kill -9: time to serving median %v, max %v; %d acknowledged records all present",
		len(restarts), median(restarts).Round(time.Millisecond), maxDur(restarts).Round(time.Millisecond), len(acked))
	if m := median(restarts); m > time.Second {
		t.Errorf("median restart-to-serving %v exceeds 1 s", m)
	}
}

// produceUntilKilled produces unique values with an idempotent acks=-1
// producer, SIGKILLs the broker after d, and adds the acknowledged records
// to acked. It returns how many were acknowledged in this round.
func produceUntilKilled(t *testing.T, b *broker, topic string, round int, d time.Duration, acked map[string]served) int {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.addr),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(5000),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
	)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	mine := map[string]served{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 50_000_000 && ctx.Err() == nil; i++ {
			v := fmt.Sprintf("round-%02d-record-%08d", round, i)
			cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
				if err == nil {
					mu.Lock()
					mine[string(r.Value)] = served{r.Partition, r.Offset}
					mu.Unlock()
				}
			})
		}
	}()
	time.Sleep(d)
	b.kill(t)
	cancel()
	<-done
	cl.Close()
	mu.Lock()
	defer mu.Unlock()
	for v, at := range mine {
		acked[v] = at
	}
	return len(mine)
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestRestart1GiB writes a 1 GiB log with the log package, lets a broker
// open it, kills it with SIGKILL (so the next start is an unclean one that
// scans the whole 1 GiB active segment) and measures the time from exec
// to the first successful Metadata + ListOffsets. It must be under 1 s.
func TestRestart1GiB(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	const topic = "big"
	cfg := log.DefaultConfig()
	cfg.Fsync = log.FsyncNever
	st, err := log.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTopic(topic, 1); err != nil {
		t.Fatal(err)
	}
	p, err := st.Partition(topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	batch := bigBatch(1000, 1000) // about 1 MiB
	var written int64
	for written+int64(len(batch)) <= cfg.SegmentBytes {
		if _, err := p.Append(batch); err != nil {
			t.Fatal(err)
		}
		written += int64(len(batch))
	}
	end := p.EndOffset()
	if s := p.Stats(); s.Segments != 1 || s.Bytes < 1<<30-int64(len(batch)) {
		t.Fatalf("wrote %+v, want one segment of about 1 GiB", s)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d bytes, %d records in one segment", written, end)

	b := startBroker(t, dir)
	clean := waitServing(t, b, topic)
	b.kill(t)
	var times []time.Duration
	for run := 0; run < 3; run++ {
		b := startBroker(t, dir)
		ready := waitServing(t, b, topic)
		c, err := dial(b.addr)
		if err != nil {
			t.Fatal(err)
		}
		hwm, err := c.listOffset(topic, 0, -1)
		_ = c.Close()
		b.kill(t)
		if err != nil || hwm != end {
			t.Fatalf("after kill -9 the 1 GiB log ends at %d (%v), want %d", hwm, err, end)
		}
		times = append(times, ready)
	}
	t.Logf("1 GiB log: serving %v after a clean start; after kill -9: %v (median %v)", clean.Round(time.Millisecond), times, median(times).Round(time.Millisecond))
	if m := median(times); m >= time.Second {
		t.Errorf("1 GiB log took %v (median of %v) to serve again after kill -9, want < 1 s", m, times)
	}
}

// bigBatch builds an uncompressed v2 batch of n records of size bytes.
func bigBatch(n, size int) []byte {
	var recs []byte
	val := make([]byte, size)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	for i := 0; i < n; i++ {
		body := []byte{0}
		body = binary.AppendVarint(body, 0)
		body = binary.AppendVarint(body, int64(i))
		body = binary.AppendVarint(body, -1) // null key
		body = binary.AppendVarint(body, int64(len(val)))
		body = append(body, val...)
		body = binary.AppendVarint(body, 0)
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	b := make([]byte, 61, 61+len(recs))
	binary.BigEndian.PutUint32(b[8:], uint32(49+len(recs)))
	b[16] = 2
	binary.BigEndian.PutUint32(b[23:], uint32(n-1))
	now := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint64(b[27:], now)
	binary.BigEndian.PutUint64(b[35:], now)
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer id -1
	binary.BigEndian.PutUint16(b[51:], 0xffff)
	binary.BigEndian.PutUint32(b[53:], 0xffffffff)
	binary.BigEndian.PutUint32(b[57:], uint32(n))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}
