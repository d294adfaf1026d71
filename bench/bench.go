// Package bench runs copyscope's transfer-path sweep: it produces a log,
// then consumes it through the in-process broker over every path with a
// lean Fetch client (variant "broker") and, alongside, moves the same
// segment bytes with the bare path loop (variant "raw"), several runs
// interleaved, and reports one record per path, variant and run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/testca"
	"github.com/copyscope/copyscope/metrics"
)

// Defaults for Config's zero fields.
const (
	DefaultSize          = 1 << 30
	DefaultRuns          = 5
	DefaultFetchMaxBytes = 64 << 20
	DefaultRecordSize    = 1024
	DefaultBatchRecords  = 64
	// DefaultCongestion is the TCP congestion control bench sets on the
	// sending socket of both variants (the broker's accepted connection,
	// the raw loop's socket). It does not pace. On a host whose default
	// is bbr (without an fq qdisc, so TCP paces itself with a timer per
	// burst), each 64 MiB Fetch response restarting from idle made TCP
	// pace the broker's read path ~2x more often than the continuous raw
	// loop (tcp_pace_kick timers per 5 GiB: 27.6k vs 12.2k) and its data
	// thread spend ~30% more CPU per GB, so broker/raw measured the
	// host's pacing, not the transfer path (0.65-0.90; with cubic 1.00).
	DefaultCongestion = "cubic"
	// SystemCongestion as Config.Congestion keeps the host's default.
	SystemCongestion = "system"
	topic            = "bench"
)

// Config says what to sweep.
type Config struct {
	Paths         []string       // transfer paths, default all (transfer.Names)
	Variants      []string       // "broker", "raw" or both (default)
	Size          int64          // bytes of records to produce, default 1 GiB
	Runs          int            // consume the log this many times per path and variant
	Chunk         int            // bytes per syscall, default transfer.DefaultChunk
	RcvLowat      int            // SO_RCVLOWAT on the consumer socket (0: kernel default)
	Verify        bool           // check every batch's CRC-32C in the broker variant
	DataDir       string         // log directory, kept (and reused) between runs; default a temp dir removed afterwards
	NoPin         bool           // do not pin data thread to CPU0 and consumer to CPU1
	FIFO          int            // SCHED_FIFO priority (1..99) for data thread and consumer; 0 off
	NoCork        bool           // raw variant without TCP_CORK, as a bare loop (raw only: the broker always corks)
	FetchMaxBytes int32          // Fetch max_bytes and partition_max_bytes, default 64 MiB
	Congestion    string         // TCP congestion control of both variants' sending sockets: default DefaultCongestion, SystemCongestion keeps the host's
	RecordSize    int            // record value bytes, default 1 KiB
	Counters      ThreadCounters // thread counters; default ProcCounters
	// Overhead, when not empty, measures what attaching things costs:
	// every run of every path and variant is done once with nothing
	// attached (ProcCounters, labelled "unprobed") and once per
	// Attachment, each attached for that measurement only, in an order
	// that rotates by run. Counters is then unused.
	Overhead []Attachment
	Progress io.Writer // one line per run, may be nil

	// congestionNote says why the default congestion control could not be
	// set (no CAP_NET_ADMIN and not in tcp_allowed_congestion_control);
	// every record and the table carry it.
	congestionNote string
	// tls: the test CA of the tls path's listener and receiver (made by
	// normalize when --paths has tls; loopback only, thrown away after).
	tls *testca.CA

	// Selectivity, when not empty, sweeps broker-side filters: records
	// get tags, and for each fraction (0.01..1) every path's broker
	// variant consumes through a filter keeping that share (sweep.go);
	// the raw variant runs at 1 only.
	Selectivity []float64
	// Chunks, when not empty, repeats everything for each chunk size
	// (the broker restarted with it); Chunk is then unused.
	Chunks []int
	// FetchSizes, when not empty, repeats everything for each Fetch
	// max_bytes; FetchMaxBytes is then unused.
	FetchSizes []int32
	// TagPerBatch, in a selectivity sweep, tags whole batches alike
	// instead of spreading the tags over every batch's records.
	TagPerBatch bool
	sel         *selection // the selectivity being run
}

// normalize fills the defaults and checks the configuration: paths and
// variants, sizes and counts, then the TCP congestion control.
func (c *Config) normalize() error {
	if err := c.normalizePaths(); err != nil {
		return err
	}
	if err := c.normalizeSizes(); err != nil {
		return err
	}
	if err := checkSweep(c); err != nil {
		return err
	}
	if c.Counters == nil {
		c.Counters = ProcCounters()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c.normalizeCongestion()
}

// normalizePaths picks every usable path when none is given (saying why
// one is skipped) and checks the paths and variants asked for.
func (c *Config) normalizePaths() error {
	if len(c.Paths) == 0 {
		// Every path that can run here; the io_uring ones are left out
		// with the reason where io_uring is unavailable.
		var skipped map[string]error
		c.Paths, skipped = transfer.Usable(transfer.Names())
		for _, p := range transfer.Names() {
			if err := skipped[p]; err != nil && c.Progress != nil {
				fmt.Fprintf(c.Progress, "skipping %s: %v\n", p, err)
			}
		}
	}
	for _, p := range c.Paths {
		if p == "tls" {
			ca, err := testca.New()
			if err != nil {
				return fmt.Errorf("tls path: make a throwaway certificate: %w", err)
			}
			c.tls = ca
			continue
		}
		if !slices.Contains(transfer.Names(), p) {
			return fmt.Errorf("unknown path %q in --paths (valid: %v, tls)", p, transfer.Names())
		}
		if err := transfer.Supported(p); err != nil {
			return fmt.Errorf("--paths: %w (leave it out)", err)
		}
	}
	if len(c.Variants) == 0 {
		c.Variants = []string{"broker", "raw"}
	}
	for _, v := range c.Variants {
		if v != "broker" && v != "raw" {
			return fmt.Errorf("unknown variant %q (valid: broker, raw)", v)
		}
	}
	return nil
}

// normalizeSizes fills the default size, runs, chunk, Fetch and record
// sizes and checks their ranges.
func (c *Config) normalizeSizes() error {
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Size < 0 {
		return fmt.Errorf("size %d is negative", c.Size)
	}
	if c.Runs == 0 {
		c.Runs = DefaultRuns
	}
	if c.Runs < 0 || c.Runs > 1000 {
		return fmt.Errorf("runs %d out of range 1..1000", c.Runs)
	}
	if c.Chunk == 0 {
		c.Chunk = transfer.DefaultChunk
	}
	if c.Chunk < 0 || c.Chunk > transfer.MaxChunk {
		return fmt.Errorf("chunk %d out of range 1..%d", c.Chunk, transfer.MaxChunk)
	}
	if c.NoCork && slices.Contains(c.Variants, "broker") {
		return fmt.Errorf("no-cork applies to the raw variant only (the broker's paths always cork): add --variants raw")
	}
	if c.FIFO < 0 || c.FIFO > 99 {
		return fmt.Errorf("fifo priority %d out of range 1..99 (0: off)", c.FIFO)
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if c.RecordSize == 0 {
		c.RecordSize = DefaultRecordSize
	}
	return nil
}

// normalizeCongestion checks the TCP congestion control asked for; the
// default falls back to the host's, with a note, where it cannot be set.
func (c *Config) normalizeCongestion() error {
	switch c.Congestion {
	case "":
		c.Congestion = DefaultCongestion
		if err := checkCongestion(c.Congestion); err != nil {
			c.congestionNote = fmt.Sprintf("TCP congestion control %s not set (%v; needs CAP_NET_ADMIN or %s in net.ipv4.tcp_allowed_congestion_control): the sending sockets keep the host's %s", DefaultCongestion, errors.Unwrap(err), DefaultCongestion, hostCongestion())
			fmt.Fprintf(c.Progress, "note: %s\n", c.congestionNote)
			c.Congestion = SystemCongestion
		}
	case SystemCongestion:
	default:
		return checkCongestion(c.Congestion)
	}
	return nil
}

// congestion is the TCP congestion control to set on the sending
// sockets, "" for the host's default.
func (c *Config) congestion() string {
	if c.Congestion == SystemCongestion {
		return ""
	}
	return c.Congestion
}

// congestionName is the congestion control the sending sockets run.
func (c *Config) congestionName() string {
	if cc := c.congestion(); cc != "" {
		return cc
	}
	return hostCongestion()
}

// cpus returns the data-thread and consumer CPUs (-1: not pinned).
func (c *Config) cpus() (int, int) {
	if c.NoPin || runtime.NumCPU() < 2 {
		return -1, -1
	}
	return 0, 1
}

// Result is one path, variant and run: the bench JSON record of
// docs/design.md. The embedded metrics.Record holds the data thread's counters
// (fields not measured are omitted); the consumer's own thread counters
// follow.
type Result struct {
	Path                string  `json:"path"`
	Variant             string  `json:"variant"` // broker or raw
	Run                 int     `json:"run"`
	Chunk               int     `json:"chunk"`
	Seconds             float64 `json:"seconds"`
	ThroughputBytesPerS float64 `json:"throughput_bytes_per_s"`
	metrics.Record

	// WorkerCPUNs is the part of cpu_ns spent by the data thread's
	// io_uring worker threads (iou-wrk-<tid>), absent when none ran.
	WorkerCPUNs            *uint64  `json:"worker_cpu_ns,omitempty"`
	ConsumerCPUNs          *uint64  `json:"consumer_cpu_ns,omitempty"`
	ConsumerCtxVoluntary   *uint64  `json:"consumer_ctx_switches_voluntary,omitempty"`
	ConsumerCtxInvoluntary *uint64  `json:"consumer_ctx_switches_involuntary,omitempty"`
	ConsumerReads          uint64   `json:"consumer_reads"`
	Fetches                uint64   `json:"fetches,omitempty"`
	RcvLowat               int      `json:"rcvlowat,omitempty"`
	TCPCongestion          string   `json:"tcp_congestion,omitempty"` // of the sending socket
	Overhead               string   `json:"overhead,omitempty"`       // with Config.Overhead: "unprobed" or the Attachment's name
	Notes                  []string `json:"notes,omitempty"`

	sweepFields // with Config.Selectivity (sweep.go)
}

// Run produces cfg.Size bytes into a fresh log, then for run 1..Runs and
// every path consumes it through the broker and raw (raw first on even
// runs).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	dir, cleanup, err := benchDir(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	lc := log.DefaultConfig()
	lc.Fsync = log.FsyncNever
	store, err := log.Open(dir, lc)
	if err != nil {
		return nil, fmt.Errorf("open bench log in %s: %w", dir, err)
	}
	defer store.Close()
	table := crc32.MakeTable(crc32.Castagnoli)
	part, end, useful, err := produce(store, cfg, table)
	if err != nil {
		return nil, err
	}
	spans, bytes, release, err := logSpans(part, end)
	if err != nil {
		return nil, err
	}
	defer release()
	fmt.Fprintf(cfg.Progress, "produced %d records, %d bytes in %d segment span(s) in %s\n", end, bytes, len(spans), dir)
	fmt.Fprintf(cfg.Progress, "sending sockets (broker and raw): TCP congestion control %s (host default %s)\n", cfg.congestionName(), hostCongestion())

	if _, recvCPU := cfg.cpus(); recvCPU >= 0 {
		defer confineOthers(recvCPU)()
	}
	chunks := cfg.Chunks
	if len(chunks) == 0 {
		chunks = []int{cfg.Chunk}
	}
	var out []Result
	fetches := cfg.FetchSizes
	if len(fetches) == 0 {
		fetches = []int32{cfg.FetchMaxBytes}
	}
	for _, ch := range chunks {
		for _, fb := range fetches {
			c := cfg
			c.Chunk, c.FetchMaxBytes = ch, fb
			rs, err := serve(ctx, store, c, spans, end, bytes, useful)
			out = append(out, rs...)
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// serve starts the broker with cfg's chunk and runs every path (and
// selectivity) against it.
func serve(ctx context.Context, store *log.Store, cfg Config, spans []transfer.Span, end, bytes int64, useful map[int]int64) ([]Result, error) {
	srv, err := startBroker(store, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if len(cfg.Selectivity) > 0 {
		return sweepRuns(ctx, srv, cfg, spans, end, bytes, useful)
	}
	return runs(ctx, srv, cfg, spans, end, bytes)
}

// runs does cfg.Runs runs of every path and variant.
func runs(ctx context.Context, srv fetchServer, cfg Config, spans []transfer.Span, end, bytes int64) ([]Result, error) {
	var out []Result
	for run := 1; run <= cfg.Runs; run++ {
		for _, path := range cfg.Paths {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			// Alternate which variant goes first, so a load that drifts
			// during a run does not always favour the same one.
			variants := cfg.Variants
			if run%2 == 0 {
				variants = slices.Clone(variants)
				slices.Reverse(variants)
			}
			for _, v := range variants {
				for _, att := range probeOrder(cfg, run) {
					if cfg.FIFO > 0 {
						// RT throttling lets SCHED_FIFO threads run 0.95 s
						// per second per CPU; start each run with the budget
						// refilled instead of stalling 50 ms in the middle.
						time.Sleep(time.Second)
					}
					r, err := measure(ctx, srv, cfg, att, path, v, spans, end, bytes)
					if err != nil {
						return out, fmt.Errorf("run %d, %s %s: %w", run, path, v, err)
					}
					r.Run = run
					r.TCPCongestion = cfg.congestionName()
					if cfg.congestionNote != "" {
						r.Notes = append(r.Notes, cfg.congestionNote)
					}
					out = append(out, r)
					label := string(r.Mode)
					if r.Overhead != "" {
						label = r.Overhead
					}
					fmt.Fprintf(cfg.Progress, "run %d %-8s %-6s %-8s %6.2f GB/s\n", run, path, v, label, r.ThroughputBytesPerS/1e9)
				}
			}
		}
	}
	return out, nil
}

// Attachment is something measured against nothing attached: Open
// attaches it (and returns the counters to read meanwhile, and how to
// detach it).
type Attachment struct {
	Name string // the records' overhead label, e.g. "probed"
	Open func() (ThreadCounters, func() error, error)
}

// probeOrder lists the measurements of one run: the configured counters
// alone (nil), or unprobed (nil) and every Overhead attachment, rotated
// by run so that none always goes first.
func probeOrder(cfg Config, run int) []*Attachment {
	if len(cfg.Overhead) == 0 {
		return []*Attachment{nil}
	}
	all := []*Attachment{nil}
	for i := range cfg.Overhead {
		all = append(all, &cfg.Overhead[i])
	}
	k := (run - 1) % len(all)
	return append(all[k:], all[:k]...)
}

// measure does one run of one path and variant: with att attached for
// this run only; with nothing attached when att is nil and overhead is
// measured; otherwise with cfg.Counters.
func measure(ctx context.Context, srv fetchServer, cfg Config, att *Attachment, path, variant string,
	spans []transfer.Span, end, bytes int64) (Result, error) {
	if len(cfg.Overhead) > 0 {
		cfg.Counters = ProcCounters()
		if att != nil {
			tc, detach, err := att.Open()
			if err != nil {
				return Result{}, fmt.Errorf("attach %s: %w", att.Name, err)
			}
			defer func() { _ = detach() }()
			cfg.Counters = tc
		}
	}
	var r Result
	var err error
	if variant == "broker" {
		r, err = consume(ctx, srv, cfg, path, end, bytes)
	} else {
		r, err = rawRecord(path, spans, bytes, cfg)
	}
	if len(cfg.Overhead) > 0 {
		r.Overhead = "unprobed"
		if att != nil {
			r.Overhead = att.Name
		}
	}
	return r, err
}

// produce appends batches of cfg.RecordSize-byte records straight through
// the log API until the partition holds cfg.Size bytes (a log already in
// --data counts), and returns the end offset.
func produce(store *log.Store, cfg Config, table *crc32.Table) (*log.Partition, int64, map[int]int64, error) {
	if err := store.CreateTopic(topic, 1); err != nil && !errors.Is(err, log.ErrTopicExists) {
		return nil, 0, nil, fmt.Errorf("create topic %q: %w", topic, err)
	}
	part, err := store.Partition(topic, 0)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("open %s-0: %w", topic, err)
	}
	bb := newBatchBuilder(table, DefaultBatchRecords, cfg.RecordSize)
	if len(cfg.Selectivity) > 0 {
		if part.Stats().Bytes > 0 {
			return nil, 0, nil, fmt.Errorf("--selectivity needs a fresh log (its arithmetic counts the records it writes): give --data an empty directory or leave it out")
		}
		bb.tagged, bb.useful, bb.perBatch = true, map[int]int64{}, cfg.TagPerBatch
		for _, s := range cfg.Selectivity {
			bb.useful[bucketCut(s)] = 0
		}
	}
	now := time.Now().UnixMilli()
	// A reused --data dir keeps its log: top it up to cfg.Size only.
	for written := part.Stats().Bytes; written < cfg.Size; {
		b := bb.next(now)
		if _, err := part.Append(b); err != nil {
			return nil, 0, nil, fmt.Errorf("append batch at %d of %d bytes: %w", written, cfg.Size, err)
		}
		written += int64(len(b))
	}
	return part, part.EndOffset(), bb.useful, nil
}

// logSpans returns the file spans holding offsets [0, end): what the raw
// variant sends. release lets retention close the files again.
func logSpans(part *log.Partition, end int64) ([]transfer.Span, int64, func(), error) {
	var spans []transfer.Span
	var results []log.ReadResult
	release := func() {
		for _, r := range results {
			r.Release()
		}
	}
	var total int64
	for off := int64(0); off < end; {
		res, err := part.Read(off, 1<<30)
		if err != nil {
			release()
			return nil, 0, nil, fmt.Errorf("read log at offset %d: %w", off, err)
		}
		results = append(results, res)
		if len(res.Slices) == 0 {
			break
		}
		for _, s := range res.Slices {
			spans = append(spans, transfer.Span{Fd: int(s.File.Fd()), Off: s.Pos, Len: s.Len})
			total += s.Len
		}
		next, err := nextOffset(res.Slices[len(res.Slices)-1])
		if err != nil {
			release()
			return nil, 0, nil, err
		}
		off = next
	}
	return spans, total, release, nil
}
