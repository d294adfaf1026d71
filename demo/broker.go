package demo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/testca"
	"github.com/copyscope/copyscope/tui"
)

// brokerSide is the embedded broker: one store, a produce server that
// lives as long as the demo, and a fetch server with one listener per path
// that is replaced when the chunk size changes (consumers reconnect).
type brokerSide struct {
	store   *log.Store
	topic   string
	reg     *transfer.Registry
	paths   []string
	produce *kafka.Server
	// tls is the throwaway CA of the tls path's listener (nil without it).
	tls *testca.CA

	mu    sync.Mutex
	fetch *kafka.Server
	addrs map[string]string // path -> fetch listener address
}

func startBroker(dir string, cfg Config, reg *transfer.Registry) (*brokerSide, error) {
	lc := log.DefaultConfig()
	lc.SegmentBytes = 64 << 20
	lc.RetentionBytes = 1 << 30 // bound the demo's disk use
	st, err := log.Open(dir, lc)
	if err != nil {
		return nil, fmt.Errorf("demo: open log in %s: %w", dir, err)
	}
	b := &brokerSide{store: st, topic: cfg.Topic, reg: reg, paths: cfg.Paths}
	if slices.Contains(cfg.Paths, "tls") {
		if b.tls, err = testca.New(); err != nil {
			st.Close()
			return nil, fmt.Errorf("demo: certificate for the tls listener: %w", err)
		}
	}
	if _, ok := st.Topics()[cfg.Topic]; !ok {
		if err := st.CreateTopic(cfg.Topic, 1); err != nil {
			st.Close()
			return nil, fmt.Errorf("demo: create topic %s: %w", cfg.Topic, err)
		}
	}
	b.produce, err = kafka.NewServer(st, kafka.Config{
		Listeners: []kafka.Listener{{Addr: "127.0.0.1:0", Path: "read"}},
		Registry:  reg,
	})
	if err == nil {
		err = b.produce.Start()
	}
	if err != nil {
		b.produce = nil
		st.Close()
		return nil, fmt.Errorf("demo: start the produce listener: %w", err)
	}
	if err := b.setChunk(cfg.Chunk); err != nil {
		b.close()
		b.closeStore()
		return nil, err
	}
	return b, nil
}

// setChunk (re)starts the fetch listeners with a new chunk size.
func (b *brokerSide) setChunk(chunk int) error {
	ls := make([]kafka.Listener, 0, len(b.paths))
	for _, p := range b.paths {
		l := kafka.Listener{Addr: "127.0.0.1:0", Path: p}
		if p == "tls" {
			l.TLS = b.tls.ServerConfig()
		}
		ls = append(ls, l)
	}
	srv, err := kafka.NewServer(b.store, kafka.Config{Listeners: ls, Registry: b.reg, Chunk: chunk})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		return fmt.Errorf("demo: start fetch listeners with chunk %d: %w", chunk, err)
	}
	addrs := map[string]string{}
	for _, a := range srv.Addrs() {
		addrs[a.Path] = a.Addr
	}
	b.mu.Lock()
	old := b.fetch
	b.fetch, b.addrs = srv, addrs
	b.mu.Unlock()
	if old != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		old.Shutdown(ctx)
	}
	return nil
}

func (b *brokerSide) addr(path string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[path]
}

func (b *brokerSide) produceAddr() string { return b.produce.Addrs()[0].Addr }

// stats reads the partition's segments and size.
func (b *brokerSide) stats() tui.BrokerStats {
	p, err := b.store.Partition(b.topic, 0)
	if err != nil {
		return tui.BrokerStats{}
	}
	ps := p.Stats()
	return tui.BrokerStats{LogEndOffset: ps.EndOffset, Segments: ps.Segments, LogBytes: ps.Bytes}
}

// close shuts both servers down, closing every connection.
func (b *brokerSide) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var errs []error
	b.mu.Lock()
	fetch := b.fetch
	b.fetch = nil
	b.mu.Unlock()
	if fetch != nil {
		errs = append(errs, fetch.Shutdown(ctx))
	}
	if b.produce != nil {
		errs = append(errs, b.produce.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

func (b *brokerSide) closeStore() error { return b.store.Close() }
