package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBusyPort: a second server on a bound address fails with one line
// naming the address and what to do, and leaves nothing bound.
func TestBusyPort(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	store, err := log.Open(t.TempDir(), log.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := DefaultConfig()
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}, {Addr: b.addr}}
	srv, err := NewServer(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start()
	if err == nil {
		t.Fatal("second server bound a busy port")
	}
	msg := err.Error()
	if !strings.Contains(msg, b.addr) || !strings.Contains(msg, "already in use") || strings.Contains(msg, "\n") {
		t.Fatalf("error should be one line naming %s and what to do: %q", b.addr, msg)
	}
	if len(srv.Addrs()) != 0 {
		t.Fatalf("failed Start left listeners bound: %v", srv.Addrs())
	}
}

// TestConnectionThreads: every connection is registered with its own OS
// thread id, the listener's path and the peer; it is unregistered when the
// client goes away.
func TestConnectionThreads(t *testing.T) {
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.Listeners = []Listener{{Addr: "127.0.0.1:0", Path: "read"}, {Addr: "127.0.0.1:0", Path: "splice"}}
	})
	addrs := b.srv.Addrs()
	var conns []net.Conn
	for _, a := range addrs {
		c := dialRaw(t, a.Addr)
		rawRequest(t, c, kmsg.NewPtrApiVersionsRequest()) // the thread is registered by now
		conns = append(conns, c)
	}
	// Metadata sends each client back to the listener it used.
	for i, c := range conns {
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(12)
		r := rawRequest(t, c, md).(*kmsg.MetadataResponse)
		if len(r.Brokers) != 1 || net.JoinHostPort(r.Brokers[0].Host, fmt.Sprint(r.Brokers[0].Port)) != addrs[i].Addr {
			t.Fatalf("metadata on %s advertises %+v", addrs[i].Addr, r.Brokers)
		}
	}
	infos := b.reg.List()
	if len(infos) != 2 {
		t.Fatalf("registry lists %d connections, want 2", len(infos))
	}
	tids := map[int]bool{}
	for _, ci := range infos {
		if ci.TID == os.Getpid() || tids[ci.TID] {
			t.Fatalf("thread id %d is not a connection's own thread", ci.TID)
		}
		tids[ci.TID] = true
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", ci.TID)); err != nil {
			t.Fatalf("registered thread %d is not a thread of this process: %v", ci.TID, err)
		}
		want := map[string]string{addrs[0].Addr: "read", addrs[1].Addr: "splice"}[ci.Listener]
		if ci.Path != want || ci.Peer == "" {
			t.Fatalf("connection %+v: path should be %q", ci, want)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(b.reg.List()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(b.reg.List()); n != 0 {
		t.Fatalf("%d connections still registered after their clients closed", n)
	}
}

// TestShutdownEndsLongPoll: a fetch long-polling on an empty partition is
// answered at once when Shutdown begins, and Shutdown returns promptly.
func TestShutdownEndsLongPoll(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("idle", 1); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.addr)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.MaxWaitMillis, req.MinBytes = 60_000, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "idle"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if _, err := c.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 9)); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		resp *kmsg.FetchResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			done <- answer{err: err}
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			done <- answer{err: err}
			return
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(12)
		done <- answer{resp, resp.ReadFrom(body[5:])} // correlation id, header tags
	}()
	time.Sleep(200 * time.Millisecond) // let the fetch start waiting
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("shutdown took %v with a long-polling fetch", el)
	}
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("long poll answer: %v", a.err)
		}
		p := a.resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.HighWatermark != 0 {
			t.Fatalf("long poll answer: error %d hw %d", p.ErrorCode, p.HighWatermark)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-polling fetch was never answered")
	}
}

// TestFetchErrors: out-of-range offsets and unknown partitions get their
// Kafka error codes, with the log's bounds.
func TestFetchErrors(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("f", 1); err != nil {
		t.Fatal(err)
	}
	p, err := b.store.Partition("f", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(makeBatch([]byte("one"), []byte("two"))); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.addr)
	for _, tc := range []struct {
		topic     string
		partition int32
		offset    int64
		want      int16
	}{
		{"f", 0, 3, kerr.OffsetOutOfRange.Code},
		{"f", 0, -5, kerr.OffsetOutOfRange.Code},
		{"f", 7, 0, kerr.UnknownTopicOrPartition.Code},
		{"nope", 0, 0, kerr.UnknownTopicOrPartition.Code},
		{"f", 0, 2, 0},
		{"f", 0, 0, 0},
	} {
		for _, v := range []int16{4, 11, 12} {
			req := kmsg.NewPtrFetchRequest()
			req.SetVersion(v)
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = tc.topic
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = tc.partition, tc.offset, 1<<20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			got := rawRequest(t, c, req).(*kmsg.FetchResponse).Topics[0].Partitions[0]
			if got.ErrorCode != tc.want {
				t.Errorf("v%d %s/%d@%d: error %d, want %d", v, tc.topic, tc.partition, tc.offset, got.ErrorCode, tc.want)
			}
			if tc.topic == "f" && tc.partition == 0 && got.HighWatermark != 2 {
				t.Errorf("v%d: high watermark %d, want 2", v, got.HighWatermark)
			}
			if tc.want == 0 && tc.offset == 0 && len(got.RecordBatches) == 0 {
				t.Errorf("v%d: no records at offset 0", v)
			}
		}
	}
}

// fetchReq builds a Fetch v12 for partitions 0..n-1 of topic at offset 0.
func fetchReq(topic string, n int32, maxWait, minBytes, maxBytes, partMax int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWait, minBytes, maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	for p := range n {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.PartitionMaxBytes = p, partMax
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// TestFetchLimits: max_bytes and partition_max_bytes bound the response,
// except that the first batch is always returned so a consumer progresses.
func TestFetchLimits(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("lim", 3); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1000)
	var batchLen int
	for p := int32(0); p < 3; p++ {
		part, _ := b.store.Partition("lim", p)
		for range 5 {
			batch := makeBatch(big)
			batchLen = len(batch)
			if _, err := part.Append(batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := dialRaw(t, b.addr)
	sizes := func(r kmsg.Response) []int {
		var out []int
		for _, p := range r.(*kmsg.FetchResponse).Topics[0].Partitions {
			if p.ErrorCode != 0 {
				t.Fatalf("partition %d: error %d", p.Partition, p.ErrorCode)
			}
			out = append(out, len(p.RecordBatches))
		}
		return out
	}
	cases := []struct {
		maxBytes, partMax int32
		want              []int
	}{
		{1 << 20, 1 << 20, []int{5 * batchLen, 5 * batchLen, 5 * batchLen}},
		{1 << 20, int32(2 * batchLen), []int{2 * batchLen, 2 * batchLen, 2 * batchLen}},
		{int32(3 * batchLen), 1 << 20, []int{3 * batchLen, 0, 0}},
		{int32(7 * batchLen), 1 << 20, []int{5 * batchLen, 2 * batchLen, 0}},
		{10, 10, []int{batchLen, 0, 0}}, // one oversized batch, then nothing
	}
	for _, tc := range cases {
		got := sizes(rawRequest(t, c, fetchReq("lim", 3, 0, 1, tc.maxBytes, tc.partMax)))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("max %d, partition max %d: sizes %v, want %v", tc.maxBytes, tc.partMax, got, tc.want)
		}
	}
}

// TestLongPollWakesOnAppend: a fetch waiting for min_bytes is answered as
// soon as a produce lands, not at max_wait_ms.
func TestLongPollWakesOnAppend(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("wake", 1); err != nil {
		t.Fatal(err)
	}
	part, _ := b.store.Partition("wake", 0)
	go func() {
		time.Sleep(300 * time.Millisecond)
		part.Append(makeBatch([]byte("wake up")))
	}()
	c := dialRaw(t, b.addr)
	start := time.Now()
	r := rawRequest(t, c, fetchReq("wake", 1, 20_000, 1, 1<<20, 1<<20)).(*kmsg.FetchResponse)
	el := time.Since(start)
	p := r.Topics[0].Partitions[0]
	if len(p.RecordBatches) == 0 || p.HighWatermark != 1 {
		t.Fatalf("answer after %v: %d record bytes, hw %d", el, len(p.RecordBatches), p.HighWatermark)
	}
	if el < 250*time.Millisecond || el > 10*time.Second {
		t.Fatalf("long poll answered after %v; want soon after the append at 300ms", el)
	}
	// With nothing arriving, max_wait_ms bounds the wait.
	start = time.Now()
	r = rawRequest(t, c, fetchReq("wake", 1, 300, 1000, 1<<20, 1<<20)).(*kmsg.FetchResponse)
	// offset 0 has data (< min_bytes), so it waits the full 300ms then answers
	if el := time.Since(start); el < 250*time.Millisecond || len(r.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Fatalf("min_bytes not reached: answered after %v with %d bytes", el, len(r.Topics[0].Partitions[0].RecordBatches))
	}
}

// TestLargeProduce: a 6 MiB batch goes through the growing request buffer
// and comes back byte for byte; the connection then carries small requests
// again (with its buffer given back).
func TestLargeProduce(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	if err := b.store.CreateTopic("large", 1); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, b.addr)
	big := make([]byte, 6<<20)
	for i := range big {
		big[i] = byte(i*31 + i>>13)
	}
	batches := [][]byte{makeBatch(big), makeBatch([]byte("small"))}
	for i, batch := range batches {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(9)
		req.Acks, req.TimeoutMillis = 1, 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "large", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
		p := rawRequest(t, c, req).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != int64(i) {
			t.Fatalf("produce %d: error %d base %d", i, p.ErrorCode, p.BaseOffset)
		}
	}
	got := rawRequest(t, c, fetchReq("large", 1, 0, 1, 64<<20, 64<<20)).(*kmsg.FetchResponse).Topics[0].Partitions[0]
	want := append(append([]byte{}, batches[0]...), batches[1]...)
	// The broker rewrites only the fields it owns, outside the CRC: base
	// offsets and the partition leader epoch (0, this broker's only epoch).
	for i, at := range []int{0, len(batches[0])} {
		binary.BigEndian.PutUint64(want[at:], uint64(i))
		binary.BigEndian.PutUint32(want[at+12:], 0)
	}
	if !bytes.Equal(got.RecordBatches, want) {
		t.Fatalf("fetched %d bytes differ from the %d produced", len(got.RecordBatches), len(want))
	}
}
