package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
)

// kafkaServer is the in-process Kafka broker: one 127.0.0.1 listener per
// path, connections' data threads published in a registry.
type kafkaServer struct {
	srv   *kafka.Server
	reg   *transfer.Registry
	addrs map[string]string
}

// startBroker starts the broker the broker variant consumes from.
func startBroker(store *log.Store, cfg Config) (fetchServer, error) {
	kc := kafka.DefaultConfig()
	kc.Listeners = nil
	for _, p := range cfg.Paths {
		l := kafka.Listener{Addr: "127.0.0.1:0", Path: p}
		if p == "tls" {
			l.TLS = cfg.tls.ServerConfig()
		}
		kc.Listeners = append(kc.Listeners, l)
	}
	kc.Chunk = cfg.Chunk
	kc.AutoCreateTopics = false
	kc.Registry = transfer.NewRegistry()
	kc.Congestion = cfg.congestion()
	srv, err := kafka.NewServer(store, kc)
	if err != nil {
		return nil, fmt.Errorf("bench broker: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("bench broker: %w", err)
	}
	k := &kafkaServer{srv: srv, reg: kc.Registry, addrs: map[string]string{}}
	for _, a := range srv.Addrs() {
		k.addrs[a.Path] = a.Addr
	}
	return k, nil
}

func (k *kafkaServer) addr(path string) (string, error) {
	a, ok := k.addrs[path]
	if !ok {
		return "", fmt.Errorf("bench broker has no listener for path %q", path)
	}
	return a, nil
}

func (k *kafkaServer) registry() *transfer.Registry { return k.reg }

// ledger: the kafka server does not expose its connections' path ledgers.
func (k *kafkaServer) ledger(int) *transfer.Ledger { return nil }

func (k *kafkaServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = k.srv.Shutdown(ctx)
}
