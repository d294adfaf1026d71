package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/metrics/promexport"
	"github.com/spf13/cobra"
)

// brokerFlags are the command-line settings of `copyscope broker`.
type brokerFlags struct {
	tlsCert, tlsKey string
	data            string
	listen          []string
	fetchPath       string
	producePath     string
	chunk           string
	fsync           string
	partitions      int32
	segmentBytes    string
	retentionBytes  string
	retentionMs     int64
	maxRequestBytes string
	logAppendTime   bool
	autoCreate      bool
	shutdownTimeout time.Duration

	maxConns, maxConnsPerIP     int
	idleTimeout, requestTimeout time.Duration
	maxBufferedRequestBytes     string
	prometheus                  string
	maxPartitions               int
	maxOpenSegmentFiles         int
}

func newBrokerCmd() *cobra.Command {
	f := brokerFlags{}
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the Kafka-compatible log broker in the foreground, for real clients",
		Long: `Run copyscope's embedded log broker in the foreground. It speaks the Kafka
protocol (ApiVersions, Metadata, Produce, Fetch, ListOffsets, CreateTopics,
DeleteTopics, CreatePartitions, InitProducerId, DescribeConfigs and the
group coordinator), so Kafka clients produce to it and consume from it, in
consumer groups too (tested with kcat, franz-go, sarama, kafka-go, KafkaJS).
Committed offsets are kept in the topic __consumer_offsets, as durable as
--fsync makes every append. Configs are fixed by the flags below: altering
one at run time is refused with INVALID_CONFIG. Transactions and
replication are not supported.

Each listener serves Fetch responses over one transfer path: read, mmap,
sendfile (the default, as Kafka), splice or zerocopy. Every connection runs
on its own OS thread, so 'copyscope watch --comm copyscope' or the probes
can attribute each path's syscalls and copies exactly.

Limits protect it from clients: --max-connections and
--max-connections-per-ip (each connection holds a thread), --idle-timeout,
--request-timeout (a request trickling in is cut) and
--max-buffered-request-bytes (memory of large requests being read);
--max-partitions and --max-open-segment-files bound what topics cost (idle
partitions close their files and reopen them on demand). Each limit hit is
logged, at most once a second per limit.

The data directory is locked by its path and watched: if it is removed or
replaced while the broker runs, produce is refused (KAFKA_STORAGE_ERROR).
Recovery after a crash logs every cut it makes; --prometheus exposes the
counts. What each --fsync mode guarantees is in the README.

SIGINT or SIGTERM shut the broker down cleanly: requests in flight finish,
connections close, the log is synced.`,
		Example: `  # one listener on the default address, data in ./copyscope-data
  copyscope broker

  # compare paths: clients choose a path by the port they connect to
  copyscope broker --data /tmp/cs --listen sendfile=127.0.0.1:9092 \
      --listen read=127.0.0.1:9093 --listen splice=127.0.0.1:9094

  # durable acks (fsync before acks=-1 is answered), 4 partitions per topic
  copyscope broker --fsync always --partitions 4

  # then, from another terminal
  kcat -b 127.0.0.1:9092 -L
  seq 1000 | kcat -b 127.0.0.1:9092 -t demo -P
  kcat -b 127.0.0.1:9092 -t demo -C -o beginning -e`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBroker(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.data, "data", "copyscope-data", "data directory (created if missing; one broker per directory)")
	fl.StringArrayVar(&f.listen, "listen", []string{kafka.DefaultAddr}, "listener as [PATH=]HOST:PORT, repeatable; PATH is one of "+strings.Join(transfer.Names(), ", ")+", or tls (a TLS listener, Kafka's SSL: needs --tls-cert and --tls-key)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) of tls= listeners")
	fl.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of tls= listeners")
	fl.StringVar(&f.fetchPath, "fetch-path", "sendfile", "transfer path of listeners that name none")
	fl.StringVar(&f.producePath, "produce-path", "write", "how produced batches reach the segment: write (pwrite) or mmap (copy into a mapped segment)")
	fl.StringVar(&f.chunk, "chunk", "64KiB", "bytes a transfer path moves per syscall")
	fl.StringVar(&f.fsync, "fsync", "interval", "when to fsync: always (fdatasync before a produce is answered: nothing acknowledged is lost on power loss), interval (every second: a power loss loses up to the last second) or never (the kernel's writeback); a process crash loses nothing acknowledged in any mode")
	fl.Int32Var(&f.partitions, "partitions", 1, "partitions of auto-created topics")
	fl.StringVar(&f.segmentBytes, "segment-bytes", "1GiB", "segment size before a new segment is rolled")
	fl.StringVar(&f.retentionBytes, "retention-bytes", "-1", "per-partition size kept; oldest segments are deleted beyond it (-1: unlimited)")
	fl.Int64Var(&f.retentionMs, "retention-ms", 7*24*3600*1000, "age after which segments are deleted (-1: forever)")
	fl.StringVar(&f.maxRequestBytes, "max-request-bytes", "100MiB", "largest request accepted; a bigger size prefix closes the connection")
	fl.BoolVar(&f.logAppendTime, "log-append-time", false, "stamp batches with the broker's time (Kafka's LogAppendTime)")
	fl.BoolVar(&f.autoCreate, "auto-create-topics", true, "create unknown topics when a client asks for their metadata")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take to finish on SIGINT/SIGTERM")
	fl.IntVar(&f.maxConns, "max-connections", kafka.DefaultMaxConnections, "connections open at once; each holds an OS thread, new ones beyond are closed with a log line (-1: no cap)")
	fl.IntVar(&f.maxConnsPerIP, "max-connections-per-ip", kafka.DefaultMaxConnectionsPerIP, "connections open at once from one client address (-1: no cap)")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", kafka.DefaultIdleTimeout, "close a connection that sent no request for this long (Kafka's connections.max.idle.ms; -1s: never)")
	fl.DurationVar(&f.requestTimeout, "request-timeout", kafka.DefaultRequestTimeout, "close a connection whose request has not fully arrived this long after its first byte (-1s: never)")
	fl.IntVar(&f.maxPartitions, "max-partitions", log.DefaultMaxPartitions, "partitions of all topics together; a topic creation beyond it is refused whole (-1: no cap)")
	fl.IntVar(&f.maxOpenSegmentFiles, "max-open-segment-files", log.DefaultMaxOpenSegmentFiles, "descriptors segments hold open (2 per segment, with their mappings); the least recently used partitions release theirs and reopen them on demand (-1: no cap)")
	fl.StringVar(&f.prometheus, "prometheus", "", "serve the broker's health metrics (recovery truncations, connection limits, data directory) at http://ADDR/metrics; a bare :PORT binds to loopback")
	fl.StringVar(&f.maxBufferedRequestBytes, "max-buffered-request-bytes", "256MiB", "bytes of large requests being read at once, over all connections (Kafka's queued.max.request.bytes; -1: no cap); a request waits for room before its body is read")
	return cmd
}

// parseListen splits "[PATH=]ADDR".
func parseListen(s, defPath string) (kafka.Listener, error) {
	path, addr, ok := strings.Cut(s, "=")
	if !ok {
		path, addr = defPath, s
	}
	if addr == "" || !strings.Contains(addr, ":") {
		return kafka.Listener{}, fmt.Errorf("--listen %q: want [PATH=]HOST:PORT, e.g. sendfile=127.0.0.1:9092", s)
	}
	if path == "tls" {
		return kafka.Listener{Addr: addr, Path: path}, nil // brokerConfigs adds the certificate
	}
	for _, n := range transfer.Names() {
		if n == path {
			return kafka.Listener{Addr: addr, Path: path}, nil
		}
	}
	return kafka.Listener{}, fmt.Errorf("--listen %q: unknown transfer path %q (use one of %s)", s, path, strings.Join(transfer.Names(), ", "))
}

// brokerConfigs turns flags into the log and server configurations.
func brokerConfigs(f brokerFlags) (log.Config, kafka.Config, error) {
	lc, kc := log.DefaultConfig(), kafka.DefaultConfig()
	var err error
	if lc.Fsync, err = log.ParseFsync(f.fsync); err != nil {
		return lc, kc, fmt.Errorf("--fsync: %w", err)
	}
	if lc.Produce, err = log.ParseProduceMode(f.producePath); err != nil {
		return lc, kc, fmt.Errorf("--produce-path: %w", err)
	}
	if lc.SegmentBytes, err = parseBytes(f.segmentBytes); err != nil {
		return lc, kc, fmt.Errorf("--segment-bytes: %w", err)
	}
	if strings.TrimSpace(f.retentionBytes) == "-1" {
		lc.RetentionBytes = -1
	} else if lc.RetentionBytes, err = parseBytes(f.retentionBytes); err != nil {
		return lc, kc, fmt.Errorf("--retention-bytes: %w", err)
	}
	switch {
	case f.retentionMs == -1:
		lc.RetentionAge = 0
	case f.retentionMs <= 0:
		return lc, kc, fmt.Errorf("--retention-ms %d: give a positive age in milliseconds, or -1 to keep data forever", f.retentionMs)
	default:
		lc.RetentionAge = time.Duration(f.retentionMs) * time.Millisecond
	}
	lc.LogAppendTime = f.logAppendTime
	if f.maxPartitions == 0 || f.maxPartitions < -1 {
		return lc, kc, fmt.Errorf("--max-partitions %d: use a positive count, or -1 for no cap", f.maxPartitions)
	}
	lc.MaxPartitions = f.maxPartitions
	if f.maxOpenSegmentFiles < -1 || (f.maxOpenSegmentFiles >= 0 && f.maxOpenSegmentFiles < 2) {
		return lc, kc, fmt.Errorf("--max-open-segment-files %d: use at least 2 (one segment), or -1 for no cap", f.maxOpenSegmentFiles)
	}
	lc.MaxOpenSegmentFiles = f.maxOpenSegmentFiles

	chunk, err := parseBytes(f.chunk)
	if err != nil {
		return lc, kc, fmt.Errorf("--chunk: %w", err)
	}
	if chunk < 1 || chunk > transfer.MaxChunk {
		return lc, kc, fmt.Errorf("--chunk %s: use 1 byte to %d MiB", f.chunk, transfer.MaxChunk>>20)
	}
	kc.Chunk = int(chunk)
	mrb, err := parseBytes(f.maxRequestBytes)
	if err != nil {
		return lc, kc, fmt.Errorf("--max-request-bytes: %w", err)
	}
	if mrb < 1024 || mrb > math.MaxInt32 {
		return lc, kc, fmt.Errorf("--max-request-bytes %s: use 1KiB to 2GiB-1", f.maxRequestBytes)
	}
	kc.MaxRequestBytes = int32(mrb)
	if err := limitConfig(f, &kc); err != nil {
		return lc, kc, err
	}
	if f.partitions < 1 || f.partitions > kafka.MaxPartitions {
		return lc, kc, fmt.Errorf("--partitions %d: use 1..%d", f.partitions, kafka.MaxPartitions)
	}
	kc.DefaultPartitions = f.partitions
	kc.AutoCreateTopics = f.autoCreate
	if _, err := parseListen(f.fetchPath+"=x:0", ""); err != nil {
		return lc, kc, fmt.Errorf("--fetch-path: unknown transfer path %q (use one of %s)", f.fetchPath, strings.Join(transfer.Names(), ", "))
	}
	kc.DefaultFetchPath = f.fetchPath
	kc.Listeners = nil
	for _, s := range f.listen {
		l, err := parseListen(s, f.fetchPath)
		if err != nil {
			return lc, kc, err
		}
		if l.Path == "tls" {
			if l.TLS, err = tlsConfig(f.tlsCert, f.tlsKey); err != nil {
				return lc, kc, fmt.Errorf("--listen %s: %w", s, err)
			}
		}
		kc.Listeners = append(kc.Listeners, l)
	}
	return lc, kc, nil
}

func runBroker(cmd *cobra.Command, f brokerFlags) error {
	lc, kc, err := brokerConfigs(f)
	if err != nil {
		return err
	}
	errOut := cmd.ErrOrStderr()
	logf := func(format string, args ...any) {
		fmt.Fprintf(errOut, "%s copyscope broker: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	kc.Logf = logf
	lc.Logf = logf

	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("create data directory %s: %v (choose a writable directory with --data)", f.data, err)
	}
	store, err := log.Open(f.data, lc)
	if errors.Is(err, log.ErrLocked) {
		return err // already says which directory, who holds it and what to do
	}
	if err != nil {
		return fmt.Errorf("open data directory %s: %w", f.data, err)
	}
	srv, err := kafka.NewServer(store, kc)
	if err != nil {
		store.Close()
		return err
	}
	if err := srv.Start(); err != nil {
		store.Close()
		return err
	}
	if f.prometheus != "" {
		ps, err := serveBrokerMetrics(f.prometheus, store, srv)
		if err != nil {
			srv.Shutdown(context.Background())
			store.Close()
			return err
		}
		defer ps.Close()
		logf("health metrics at http://%s/metrics", ps.Addr())
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, a := range srv.Addrs() {
		logf("listening on %s (fetch path %s, chunk %d bytes)", a.Addr, a.Path, kc.Chunk)
	}
	logf("data in %s (fsync %s, produce %s); Ctrl-C to stop", f.data, f.fsync, f.producePath)
	<-ctx.Done()
	stop()
	logf("shutting down: finishing in-flight requests (up to %v)", f.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	serr := srv.Shutdown(sctx)
	cerr := store.Close()
	if serr != nil {
		return serr
	}
	if cerr != nil {
		return fmt.Errorf("close data directory %s: %w (the next start recovers the log)", f.data, cerr)
	}
	logf("stopped cleanly")
	return nil
}

// limitConfig copies the connection and memory limits; -1 (or any
// negative duration) turns one off.
func limitConfig(f brokerFlags, kc *kafka.Config) error {
	for _, c := range []struct {
		name string
		v    int
		dst  *int
	}{{"--max-connections", f.maxConns, &kc.MaxConnections}, {"--max-connections-per-ip", f.maxConnsPerIP, &kc.MaxConnectionsPerIP}} {
		if c.v == 0 || c.v < -1 {
			return fmt.Errorf("%s %d: use a positive count, or -1 for no cap", c.name, c.v)
		}
		*c.dst = c.v
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		dst  *time.Duration
	}{{"--idle-timeout", f.idleTimeout, &kc.IdleTimeout}, {"--request-timeout", f.requestTimeout, &kc.RequestTimeout}} {
		if d.v == 0 {
			return fmt.Errorf("%s 0: give a duration such as 30s, or -1s for none", d.name)
		}
		*d.dst = max(d.v, -1)
	}
	if strings.TrimSpace(f.maxBufferedRequestBytes) == "-1" {
		kc.MaxBufferedRequestBytes = -1
		return nil
	}
	b, err := parseBytes(f.maxBufferedRequestBytes)
	if err != nil {
		return fmt.Errorf("--max-buffered-request-bytes: %w", err)
	}
	if b < int64(kc.MaxRequestBytes)+4 {
		return fmt.Errorf("--max-buffered-request-bytes %s: below one request of --max-request-bytes %d (raise it or lower --max-request-bytes)", f.maxBufferedRequestBytes, kc.MaxRequestBytes)
	}
	kc.MaxBufferedRequestBytes = b
	return nil
}

// serveBrokerMetrics exposes the store's recovery and the server's limit
// counters for Prometheus.
func serveBrokerMetrics(addr string, store *log.Store, srv *kafka.Server) (*promexport.Server, error) {
	rec := store.Recovery()
	col := promexport.NewBrokerCollector(func() promexport.BrokerCounters {
		ls := srv.LimitStats()
		return promexport.BrokerCounters{
			RecoveryTruncations: uint64(len(rec.Truncations)), RecoveryDroppedBytes: uint64(rec.BytesDropped),
			ConnectionsOpen: ls.Open, ConnectionsRefused: ls.Refused, IdleClosed: ls.IdleClosed,
			RequestTimeouts: ls.RequestTimeouts, BufferWaits: ls.BufferWaits, DataDirLost: store.DirLost(),
		}
	})
	return promexport.Serve(addr, col)
}

// tlsConfig loads a TLS listener's certificate and key.
func tlsConfig(cert, key string) (*tls.Config, error) {
	if cert == "" || key == "" {
		return nil, errors.New("a tls listener needs --tls-cert and --tls-key (PEM files)")
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", cert, key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}, nil
}
