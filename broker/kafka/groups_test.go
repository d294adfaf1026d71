package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceSeq produces n records to each of partitions partitions of
// topic; record i of partition p has value "p<p>-<i>", so order and
// completeness can be checked from the values alone.
func produceSeq(t *testing.T, addr, topic string, partitions int32, n int) {
	t.Helper()
	cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for p := range partitions {
		for i := range n {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "p%d-%d", p, i)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cl.Close()
}

// seqChecker checks that records arrive exactly once, in partition order.
type seqChecker struct {
	mu   sync.Mutex
	next map[int32]int64
	n    int
}

func (s *seqChecker) add(t *testing.T, r *kgo.Record) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = map[int32]int64{}
	}
	want := fmt.Sprintf("p%d-%d", r.Partition, s.next[r.Partition])
	if string(r.Value) != want || r.Offset != s.next[r.Partition] {
		t.Fatalf("partition %d: got %q at offset %d, want %q at offset %d", r.Partition, r.Value, r.Offset, want, s.next[r.Partition])
	}
	s.next[r.Partition]++
	s.n++
}

// TestGroupKgo consumes a 4-partition topic with a franz-go group
// consumer (the cooperative-sticky balancer, autocommit), checks every
// record arrives once and in order, then checks a second consumer of the
// same group, after a broker restart, resumes at the committed offsets.
func TestGroupKgo(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, nil)
	const topic, partitions, n = "grp", 4, 2000
	createTopic(t, newClient(t, b.addr), topic, partitions)
	produceSeq(t, b.addr, topic, partitions, n)

	consume := func(want int) *seqChecker {
		t.Helper()
		cl := newClient(t, b.addr, kgo.ConsumerGroup("g1"), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SessionTimeout(6*time.Second))
		var s seqChecker
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for s.n < want {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consumed %d of %d records: %v", s.n, want, err)
			}
			fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
			fs.EachRecord(func(r *kgo.Record) { s.add(t, r) })
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
		cl.Close() // leaves the group
		return &s
	}
	s := consume(partitions * n)
	if len(s.next) != partitions {
		t.Fatalf("consumed from %d partitions, want %d", len(s.next), partitions)
	}

	b.stop()
	b = startBroker(t, dir, nil)
	produceSeq(t, b.addr, topic, partitions, n) // values p<p>-0.. again, at offsets n..2n-1
	cl := newClient(t, b.addr, kgo.ConsumerGroup("g1"), kgo.ConsumeTopics(topic), kgo.SessionTimeout(6*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := 0
	for got < partitions*n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("after restart: consumed %d of %d records: %v", got, partitions*n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < n {
				t.Fatalf("after restart the group re-read %s-%d offset %d: the committed offset %d was lost", r.Topic, r.Partition, r.Offset, n)
			}
			got++
		})
	}
}

// TestGroupStaticMember checks static membership (group.instance.id,
// KIP-345): a static consumer that goes away without leaving is replaced
// by its next incarnation at once, not after its session timeout, and the
// new one resumes at the committed offsets.
func TestGroupStaticMember(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	const topic, partitions, n = "static", 2, 500
	createTopic(t, newClient(t, b.addr), topic, partitions)
	produceSeq(t, b.addr, topic, partitions, n)
	consume := func(first int64) time.Duration {
		t.Helper()
		start := time.Now()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.ConsumerGroup("sg"), kgo.ConsumeTopics(topic),
			kgo.InstanceID("instance-1"), kgo.SessionTimeout(30*time.Second),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got := 0
		for got < partitions*n {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("static member consumed %d of %d records: %v", got, partitions*n, ctx.Err())
			}
			fs.EachRecord(func(r *kgo.Record) {
				if r.Offset < first {
					t.Fatalf("static member re-read %s-%d offset %d: committed offset %d ignored", r.Topic, r.Partition, r.Offset, first)
				}
				got++
			})
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		cl.Close() // a static member does not leave the group on close
		return took
	}
	consume(0)
	produceSeq(t, b.addr, topic, partitions, n)
	if took := consume(n); took > 10*time.Second {
		t.Fatalf("the static member's next incarnation took %v, as if it waited for the 30 s session timeout", took)
	}
	cl := newClient(t, b.addr)
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"sg"}
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if g := resp.Groups[0]; len(g.Members) != 1 || g.Members[0].InstanceID == nil || *g.Members[0].InstanceID != "instance-1" {
		t.Fatalf("group sg after two incarnations of one static member: %+v, want one member instance-1", g)
	}
}
