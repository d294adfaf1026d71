package itest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// seqHandler is a sarama ConsumerGroupHandler that checks records arrive
// exactly once and in partition order, from offset first on.
type seqHandler struct {
	t      *testing.T
	mu     sync.Mutex
	next   map[int32]int64
	first  int64
	n      int
	want   int
	done   chan struct{}
	closed bool
}

func (h *seqHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *seqHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *seqHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.mu.Lock()
		next, ok := h.next[m.Partition]
		if !ok {
			next = h.first
		}
		want := fmt.Sprintf("p%d-%d-", m.Partition, next-h.first)
		if m.Offset != next || !strings.HasPrefix(string(m.Value), want) {
			h.mu.Unlock()
			h.t.Errorf("partition %d: got %q at offset %d, want %q... at offset %d", m.Partition, m.Value, m.Offset, want, next)
			return fmt.Errorf("out of order")
		}
		h.next[m.Partition] = next + 1
		h.n++
		if h.n == h.want && !h.closed {
			h.closed = true
			close(h.done)
		}
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

// consumeGroup consumes want records through a sarama ConsumerGroup.
func consumeGroup(t *testing.T, cfg *sarama.Config, addr, group, topic string, first int64, want int) *seqHandler {
	t.Helper()
	cg, err := sarama.NewConsumerGroup([]string{addr}, group, cfg)
	if err != nil {
		t.Fatalf("sarama consumer group: %v", err)
	}
	h := &seqHandler{t: t, next: map[int32]int64{}, first: first, want: want, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				stopped <- err
				return
			}
		}
		stopped <- nil
	}()
	select {
	case <-h.done:
	case err := <-stopped:
		t.Fatalf("sarama consume: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("sarama consumed %d of %d records in 60 s", h.n, want)
	}
	cancel()
	<-stopped
	if err := cg.Close(); err != nil { // commits the marked offsets
		t.Fatalf("sarama close: %v", err)
	}
	return h
}

// TestSaramaConsumerGroup consumes a 4-partition topic through sarama's
// ConsumerGroup, at sarama's default protocol version and at Kafka 3.6's,
// exactly once and in partition order; after a broker restart the group
// resumes at the committed offsets. sarama's ClusterAdmin then lists
// topics (DescribeConfigs), groups and committed offsets.
func TestSaramaConsumerGroup(t *testing.T) {
	for _, v := range []sarama.KafkaVersion{sarama.DefaultVersion, sarama.V3_6_0_0} {
		t.Run(v.String(), func(t *testing.T) {
			dir := t.TempDir()
			b := startBroker(t, dir)
			const topic, group, partitions, n = "sar", "sg", 4, 1000
			produceSeq(t, b.addr, topic, partitions, n, 20)
			cfg := sarama.NewConfig()
			cfg.Version = v
			cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
			cfg.Consumer.Group.Session.Timeout = 6 * time.Second
			cfg.Consumer.Group.Heartbeat.Interval = time.Second
			h := consumeGroup(t, cfg, b.addr, group, topic, 0, partitions*n)
			if len(h.next) != partitions {
				t.Fatalf("consumed %d partitions, want %d", len(h.next), partitions)
			}

			b.stop()
			b = startBroker(t, dir)
			produceSeq(t, b.addr, topic, partitions, n, 20) // offsets n..2n-1
			consumeGroup(t, cfg, b.addr, group, topic, n, partitions*n)

			admin, err := sarama.NewClusterAdmin([]string{b.addr}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			topics, err := admin.ListTopics()
			if err != nil {
				t.Fatalf("ClusterAdmin.ListTopics: %v", err)
			}
			if d, ok := topics[topic]; !ok || d.NumPartitions != partitions {
				t.Fatalf("ListTopics: %s is %+v, want %d partitions", topic, d, partitions)
			}
			entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
			if err != nil {
				t.Fatalf("DescribeConfig: %v", err)
			}
			seg := ""
			for _, e := range entries {
				if e.Name == "segment.bytes" {
					seg = e.Value
				}
			}
			if seg != "1073741824" { // Kafka's default, which the broker runs with
				t.Errorf("DescribeConfig: segment.bytes = %q, want 1073741824", seg)
			}
			groups, err := admin.ListConsumerGroups()
			if err != nil || groups[group] != "consumer" {
				t.Fatalf("ListConsumerGroups: %v %v", groups, err)
			}
			offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
			if err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < partitions; p++ {
				if blk := offs.GetBlock(topic, p); blk == nil || blk.Offset != 2*n {
					t.Errorf("committed offset of %s-%d: %+v, want %d", topic, p, blk, 2*n)
				}
			}
		})
	}
}
