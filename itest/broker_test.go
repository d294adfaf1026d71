package itest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// broker is a copyscope broker on a data directory, in this process.
type broker struct {
	store *log.Store
	srv   *kafka.Server
	addr  string
}

// startBroker runs a broker with `copyscope broker`'s defaults on dir,
// listening on a free loopback port.
func startBroker(t *testing.T, dir string) *broker {
	t.Helper()
	st, err := log.Open(dir, log.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := kafka.DefaultConfig()
	cfg.Listeners = []kafka.Listener{{Addr: "127.0.0.1:0"}}
	srv, err := kafka.NewServer(st, cfg)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		st.Close()
		t.Fatal(err)
	}
	b := &broker{store: st, srv: srv, addr: srv.Addrs()[0].Addr}
	t.Cleanup(b.stop)
	return b
}

func (b *broker) stop() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.srv.Shutdown(ctx)
	_ = b.store.Close()
	b.srv = nil
}

// produceSeq creates topic with partitions partitions (unless it exists)
// and produces n records to each; record i of partition p has the value
// "p<p>-<i>" so order and completeness are checked from values alone.
func produceSeq(t *testing.T, addr, topic string, partitions int32, n, size int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100_000),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // KafkaJS reads no snappy without a plugin
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}
	resp, err := ct.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil && err != kerr.TopicAlreadyExists {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	errs := make(chan error, 1)
	for p := range partitions {
		for i := range n {
			v := fmt.Appendf(nil, "p%d-%d-", p, i)
			for len(v) < size {
				v = append(v, 'x')
			}
			cl.Produce(ctx, &kgo.Record{Partition: p, Value: v}, func(_ *kgo.Record, err error) {
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatalf("produce to %s: %v", topic, err)
	default:
	}
}
