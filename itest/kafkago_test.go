package itest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// readKafkaGo reads want records with a segmentio/kafka-go Reader in
// group mode, checking partition order from offset first on; Close
// commits what was read.
func readKafkaGo(t *testing.T, addr, group, topic string, first int64, want int) {
	t.Helper()
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: []string{addr}, GroupID: group, Topic: topic,
		StartOffset: kafkago.FirstOffset, CommitInterval: 100 * time.Millisecond,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second, MaxWait: 100 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := map[int]int64{}
	for got := 0; got < want; got++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("kafka-go read %d of %d records: %v", got, want, err)
		}
		n, ok := next[m.Partition]
		if !ok {
			n = first
		}
		prefix := fmt.Sprintf("p%d-%d-", m.Partition, n-first)
		if m.Offset != n || !strings.HasPrefix(string(m.Value), prefix) {
			t.Fatalf("kafka-go: partition %d: got %q at offset %d, want %q... at %d", m.Partition, m.Value, m.Offset, prefix, n)
		}
		next[m.Partition] = n + 1
	}
	if err := r.Close(); err != nil {
		t.Fatalf("kafka-go reader close: %v", err)
	}
}

// TestKafkaGoGroupReader consumes a 4-partition topic with kafka-go's
// group Reader (FindCoordinator v0, JoinGroup v1, OffsetFetch v1: the old
// versions), exactly once and in partition order, and a second reader of
// the group after a broker restart starts at the committed offsets.
func TestKafkaGoGroupReader(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	const topic, group, partitions, n = "kgo", "kg", 4, 500
	produceSeq(t, b.addr, topic, partitions, n, 20)
	readKafkaGo(t, b.addr, group, topic, 0, partitions*n)
	b.stop()
	b = startBroker(t, dir)
	produceSeq(t, b.addr, topic, partitions, n, 20)
	readKafkaGo(t, b.addr, group, topic, n, partitions*n)
}
