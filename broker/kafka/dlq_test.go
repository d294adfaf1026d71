package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// consumeAll reads partition 0 of topic from the start until n records
// arrived, with franz-go.
func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d records within 30s", topic, len(got), n)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("consume %s: %v", topic, e.Err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

func refRecord(dlq, topic string, offset int64) *kgo.Record {
	return &kgo.Record{Topic: dlq, Headers: []kgo.RecordHeader{{Key: RefHeader, Value: fmt.Appendf(nil, "%s/0/%d", topic, offset)}}}
}

func sameRecord(a, b *kgo.Record) bool {
	if !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Value, b.Value) || len(a.Headers) != len(b.Headers) || !a.Timestamp.Equal(b.Timestamp) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// TestDeadLettersByReference sends 10,000 records back by reference (2,000
// with -short) through every path's listener and checks the dead-letter
// topic holds the originals, in order, with the same keys, values,
// headers and timestamps, as franz-go reads them from the source topic.
func TestDeadLettersByReference(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 2_000
	}
	_, addrs := startPathBroker(t)
	produceTagged(t, addrs["read"], "orders", n)
	orig := consumeAll(t, addrs["read"], "orders", n)
	for _, path := range transfer.Names() {
		dlq := "orders-" + path + DeadLetterSuffix
		cl := newClient(t, addrs[path], kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		createTopic(t, cl, dlq, 1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for i := range n {
			// Every other record, then the rest: references out of order.
			off := int64(2*i) % int64(n)
			if 2*i >= n {
				off++
			}
			cl.Produce(ctx, refRecord(dlq, "orders", off), func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("%s: send back %d: %v", path, off, err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		got := consumeAll(t, addrs[path], dlq, n)
		for i, g := range got[:n] {
			off := int64(2*i) % int64(n)
			if 2*i >= n {
				off++
			}
			if !sameRecord(g, orig[off]) {
				t.Fatalf("%s: dead letter %d is not original %d:\ngot  %q %q %v %v\nwant %q %q %v %v", path, i, off,
					g.Key, g.Value, g.Headers, g.Timestamp, orig[off].Key, orig[off].Value, orig[off].Headers, orig[off].Timestamp)
			}
		}
	}
}

// TestDeadLetterRejects: bad references fail with INVALID_RECORD and a
// message, and the dead-letter topic stays empty.
func TestDeadLetterRejects(t *testing.T) {
	b, addrs := startPathBroker(t)
	produceTagged(t, addrs["read"], "orders", 20)
	cl := newClient(t, addrs["mmap"], kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordRetries(1))
	createTopic(t, cl, "bad.dlq", 1)
	before := dirDigest(t, b.dir)
	ref := func(v string) *kgo.Record {
		return &kgo.Record{Topic: "bad.dlq", Headers: []kgo.RecordHeader{{Key: RefHeader, Value: []byte(v)}}}
	}
	withValue := ref("orders/0/1")
	withValue.Value = []byte("payload")
	cases := map[string]*kgo.Record{
		"unknown topic":  ref("nosuch/0/1"),
		"bad partition":  ref("orders/7/1"),
		"offset too big": ref("orders/0/20"),
		"negative":       ref("orders/0/-1"),
		"not a ref":      ref("orders-0-1"),
		"bad topic name": ref("or ders/0/1"),
		"has a value":    withValue,
	}
	for name, r := range cases {
		err := cl.ProduceSync(context.Background(), r).FirstErr()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Errorf("%s: err %v, want INVALID_RECORD", name, err)
		}
	}
	if after := dirDigest(t, b.dir); after != before {
		t.Errorf("rejected references changed the data directory")
	}
	p, err := b.store.Partition("bad.dlq", 0)
	if err != nil || p.EndOffset() != 0 {
		t.Errorf("bad.dlq end offset %v (%v), want 0", p.EndOffset(), err)
	}
}

// FuzzDeadLetterRefs feeds arbitrary produce record sets and reference
// headers to the reference decoder: it must accept, reject with
// errBadRef, or leave the set to the log's validation, never panic.
func FuzzDeadLetterRefs(f *testing.F) {
	f.Add(encodeBatchForFuzz("orders/0/1", nil), "orders/0/1")
	f.Add(encodeBatchForFuzz("orders/0/1", []byte("v")), "a/b/c")
	f.Add([]byte{0, 1, 2}, "x//1")
	f.Fuzz(func(t *testing.T, records []byte, ref string) {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(records); err == nil {
			if _, _, err := refRecords(rb); err != nil && !errors.Is(err, errBadRef) {
				t.Fatalf("refRecords: %v is not a reference rejection", err)
			}
		}
		if _, _, _, err := parseRef(ref); err != nil && !errors.Is(err, errBadRef) {
			t.Fatalf("parseRef(%q): %v is not a reference rejection", ref, err)
		}
	})
}

func encodeBatchForFuzz(ref string, value []byte) []byte {
	r := kmsg.Record{Value: value, Headers: []kmsg.Header{{Key: RefHeader, Value: []byte(ref)}}}
	return appendBatch(nil, []kmsg.Record{r}, []int64{1})
}
