package kafka

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// benchProducer is one franz-go producer as in Kafka's published
// single-producer test: acks=1, no idempotence, a few ms of linger, big
// batches.
func benchProducer(b *testing.B, addr, topic string) *kgo.Client {
	return newClient(b, addr,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(1<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.AllowAutoTopicCreation(),
	)
}

// produceN sends n 100-byte records and waits for every ack.
func produceN(b *testing.B, cl *kgo.Client, n int) {
	value := make([]byte, 100)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	var failed atomic.Pointer[error]
	ctx := context.Background()
	for range n {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if e := failed.Load(); e != nil {
		b.Fatal(*e)
	}
}

// BenchmarkProduceKgo: records/s of one franz-go producer, 100-byte
// records, acks=1 (anchor: Kafka's 821,557 records/s). Run with a fixed
// count, e.g. -benchtime=2000000x.
func BenchmarkProduceKgo(b *testing.B) {
	br := startBroker(b, b.TempDir(), func(c *Config) { c.Logf = nil })
	cl := benchProducer(b, br.addr, "bench")
	produceN(b, cl, 1000) // create the topic, warm up connections
	b.SetBytes(100)
	cpu0 := connThreadsCPU(b, br)
	b.ResetTimer()
	start := time.Now()
	produceN(b, cl, b.N)
	el := time.Since(start)
	b.StopTimer()
	cpu := connThreadsCPU(b, br) - cpu0
	b.ReportMetric(float64(cpu)/float64(b.N), "broker-cpu-ns/record")
	p, err := br.store.Partition("bench", 0)
	if err != nil {
		b.Fatal(err)
	}
	if end := p.EndOffset(); end != int64(b.N)+1000 {
		b.Fatalf("log holds %d records after %d acknowledged", end, b.N+1000)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}

// BenchmarkConsumeKgo: records/s of one franz-go consumer reading 100-byte
// records produced beforehand (untimed) over the default sendfile path.
func BenchmarkConsumeKgo(b *testing.B) {
	br := startBroker(b, b.TempDir(), func(c *Config) { c.Logf = nil })
	produceN(b, benchProducer(b, br.addr, "bench"), b.N)
	cl := newClient(b, br.addr, kgo.ConsumeTopics("bench"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(100)
	cpu0 := connThreadsCPU(b, br)
	b.ResetTimer()
	start := time.Now()
	got := 0
	for got < b.N {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("consumed %d of %d", got, b.N)
		}
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", t, p, err) })
		got += fs.NumRecords()
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(connThreadsCPU(b, br)-cpu0)/float64(got), "broker-cpu-ns/record")
	b.ReportMetric(float64(got)/el.Seconds(), "records/s")
}

// connThreadsCPU sums the CPU time (ns, from /proc schedstat) of the
// broker's live connection threads: the broker's own cost, apart from the
// client's in the same process.
func connThreadsCPU(b *testing.B, br *testBroker) int64 {
	b.Helper()
	var total int64
	for _, ci := range br.reg.List() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", ci.TID))
		if err != nil {
			b.Fatalf("connection thread %d: %v", ci.TID, err)
		}
		var ns int64
		fmt.Sscan(string(data), &ns)
		total += ns
	}
	return total
}
