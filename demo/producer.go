package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/tagmix"
)

// produceBatch is how many records one ProduceSync carries.
const produceBatch = 32

// preload connects a franz-go producer to the broker through the Kafka
// protocol and produces cfg.Preload bytes so the consumers have a log to
// read. The function it returns (run it on its own goroutine, counted in
// d.wg) keeps producing at cfg.ProduceRate until the demo stops.
func (d *Demo) preload() (func(), error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(d.brk.produceAddr()),
		kgo.DefaultProduceTopic(d.cfg.Topic),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchMaxBytes(int32(produceBatch*(d.cfg.RecordSize+128))),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return nil, fmt.Errorf("demo producer: connect to %s: %w", d.brk.produceAddr(), err)
	}
	value := make([]byte, d.cfg.RecordSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rng.IntN(256))
	}
	batch := make([]*kgo.Record, produceBatch)
	tags := tagHeaders()
	var seq uint64
	produce := func(ctx context.Context) error {
		for i := range batch {
			tag := tags[tagmix.Bucket(seq)]
			seq++
			batch[i] = &kgo.Record{Value: value, Headers: []kgo.RecordHeader{{Key: log.TagHeader, Value: tag}}}
		}
		res := cl.ProduceSync(ctx, batch...)
		if err := res.FirstErr(); err != nil {
			return err
		}
		for _, r := range res {
			d.produced.Add(int64(len(r.Record.Value)))
			if o := r.Record.Offset + 1; o > d.leo.Load() {
				d.leo.Store(o)
			}
		}
		return nil
	}
	// Preload synchronously, bounded by a deadline so a broken broker
	// fails the start instead of hanging it.
	pctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	for d.produced.Load() < d.cfg.Preload {
		if err := produce(pctx); err != nil {
			cl.Close()
			return nil, fmt.Errorf("demo producer: preload %d bytes into %s: %w", d.cfg.Preload, d.cfg.Topic, err)
		}
	}
	return func() {
		defer d.wg.Done()
		defer cl.Close()
		if d.cfg.ProduceRate <= 0 {
			<-d.ctx.Done()
			return
		}
		perBatch := time.Duration(float64(produceBatch*d.cfg.RecordSize) / d.cfg.ProduceRate * 1e9)
		tk := time.NewTicker(perBatch)
		defer tk.Stop()
		for {
			select {
			case <-d.ctx.Done():
				return
			case <-tk.C:
			}
			if err := produce(d.ctx); err != nil && d.ctx.Err() == nil {
				d.grp.mu.Lock()
				d.grp.noteErr(fmt.Errorf("producer: %w", err))
				d.grp.mu.Unlock()
			}
		}
	}, nil
}
