package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// testBroker is a store and a started server on 127.0.0.1:0.
type testBroker struct {
	dir   string
	store *log.Store
	srv   *Server
	addr  string
	reg   *transfer.Registry
}

func startBroker(t testing.TB, dir string, mod func(*Config)) *testBroker {
	t.Helper()
	return startBrokerWith(t, dir, nil, mod)
}

// startBrokerLog starts a broker whose log config logMod changes.
func startBrokerLog(t testing.TB, dir string, logMod func(*log.Config)) *testBroker {
	t.Helper()
	return startBrokerWith(t, dir, logMod, nil)
}

func startBrokerWith(t testing.TB, dir string, logMod func(*log.Config), mod func(*Config)) *testBroker {
	t.Helper()
	lc := log.DefaultConfig()
	if logMod != nil {
		logMod(&lc)
	}
	store, err := log.Open(dir, lc)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}}
	cfg.Registry = transfer.NewRegistry()
	cfg.Logf = func(format string, args ...any) { t.Logf("broker: "+format, args...) }
	if mod != nil {
		mod(&cfg)
	}
	srv, err := NewServer(store, cfg)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		store.Close()
		t.Fatal(err)
	}
	b := &testBroker{dir: dir, store: store, srv: srv, addr: srv.Addrs()[0].Addr, reg: cfg.Registry}
	t.Cleanup(b.stop)
	return b
}

func (b *testBroker) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.srv.Shutdown(ctx)
	b.store.Close()
	b.srv = nil
}

func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t testing.TB, cl *kgo.Client, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// TestKgoAllCodecs produces with an idempotent franz-go producer in every
// compression codec to 4 partitions, with keys and headers, and reads it
// all back: contiguous offsets from 0 and identical records.
func TestKgoAllCodecs(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	admin := newClient(t, b.addr)
	const topic = "codecs"
	createTopic(t, admin, topic, 4)

	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()}, {"gzip", kgo.GzipCompression()}, {"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()},
	}
	perCodec := 3000
	if testing.Short() {
		perCodec = 500
	}
	type rec struct {
		value   []byte
		headers []kgo.RecordHeader
	}
	want := map[string]rec{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range codecs {
		p := newClient(t, b.addr, kgo.ProducerBatchCompression(c.codec), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond))
		var recs []*kgo.Record
		for i := range perCodec {
			key := fmt.Sprintf("%s-%d", c.name, i)
			val := bytes.Repeat([]byte(key+"|"), 1+i%40)
			hdrs := []kgo.RecordHeader{{Key: "codec", Value: []byte(c.name)}, {Key: "i", Value: fmt.Appendf(nil, "%d", i)}}
			want[key] = rec{val, hdrs}
			recs = append(recs, &kgo.Record{Key: []byte(key), Value: val, Headers: hdrs})
		}
		if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", c.name, err)
		}
	}

	c := newClient(t, b.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	next := map[int32]int64{}
	got := 0
	for got < len(want) {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", got, len(want))
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != next[r.Partition] {
				t.Fatalf("partition %d: offset %d, want %d (offsets must be contiguous)", r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition]++
			w, ok := want[string(r.Key)]
			if !ok {
				t.Fatalf("unexpected or duplicate key %q", r.Key)
			}
			delete(want, string(r.Key))
			if !bytes.Equal(r.Value, w.value) || fmt.Sprint(r.Headers) != fmt.Sprint(w.headers) {
				t.Fatalf("key %s: value/headers differ", r.Key)
			}
			got++
		})
	}
	if len(next) != 4 {
		t.Fatalf("records landed in %d partitions, want 4", len(next))
	}
	if len(want) != 0 {
		t.Fatalf("%d records missing", len(want))
	}
}

// TestListOffsetsByTimestamp produces records with known timestamps and
// checks earliest, latest and by-timestamp lookups.
func TestListOffsetsByTimestamp(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	const topic = "times"
	cl := newClient(t, b.addr, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.UnixMilli(1_700_000_000_000)
	// Ten separate batches, timestamps a second apart.
	for i := range 10 {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: t0.Add(time.Duration(i) * time.Second)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		ts, wantOff, wantTS int64
	}{
		{-2, 0, -1}, {-1, 10, -1},
		{t0.UnixMilli(), 0, t0.UnixMilli()},
		{t0.UnixMilli() + 5500, 6, t0.UnixMilli() + 6000},
		{t0.UnixMilli() + 9000, 9, t0.UnixMilli() + 9000},
		{t0.UnixMilli() - 1e6, 0, t0.UnixMilli()},
	}
	for _, c := range cases {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = c.ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.Offset != c.wantOff || p.Timestamp != c.wantTS {
			t.Errorf("ts %d: offset %d ts %d err %d, want offset %d ts %d", c.ts, p.Offset, p.Timestamp, p.ErrorCode, c.wantOff, c.wantTS)
		}
	}
	// Past the last timestamp: no offset (Kafka answers -1).
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = t0.UnixMilli() + 60_000
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Topics[0].Partitions[0]; p.Offset != -1 || p.ErrorCode != 0 {
		t.Errorf("timestamp after the log: offset %d err %d, want -1 and no error", p.Offset, p.ErrorCode)
	}
}

// dirDigest hashes every file under dir (name, size, contents), so a test
// can tell that nothing on disk changed.
func dirDigest(t testing.TB, dir string) string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintln(h, n)
		if st, err := os.Stat(n); err == nil && st.Mode().IsRegular() {
			data, _ := os.ReadFile(n)
			h.Write(data)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestCongestion: Config.Congestion is set on accepted connections, and a
// name the kernel does not know fails at NewServer, not per connection.
func TestCongestion(t *testing.T) {
	store, err := log.Open(t.TempDir(), log.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}}
	cfg.Congestion = "no-such-congestion-control"
	if _, err := NewServer(store, cfg); err == nil {
		t.Fatal("NewServer accepted an unknown TCP congestion control")
	}

	b := startBroker(t, t.TempDir(), func(c *Config) { c.Congestion = "reno" }) // reno is always built in
	nc, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.srv.mu.Lock()
		fd := -1
		for c := range b.srv.conns {
			fd = c.fd
		}
		var got string
		if fd >= 0 {
			got, err = unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
		}
		b.srv.mu.Unlock()
		if fd >= 0 {
			if err != nil {
				t.Fatal(err)
			}
			if got != "reno" {
				t.Fatalf("accepted connection runs congestion control %q, want reno", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection adopted within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
