package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/copyscope/copyscope/bench"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
	"github.com/spf13/cobra"
)

// benchFlags are copyscope bench's options, as given.
type benchFlags struct {
	paths, variants, size, chunk, mode, rcvlowat, fetchMax, csvFile, data, tcpCC string
	runs, fifo, duty                                                             int
	verify, asJSON, noPin, noCork, overhead, floor                               bool

	sweep sweepFlags // bench_sweep.go
}

const benchLong = `bench produces --size bytes of ~1 KiB records into a fresh log, starts the
broker in process with one listener per path, and consumes the whole log
with a lean Fetch client (variant "broker"). Alongside each broker run it
moves the same segment bytes with the bare path loop to a loopback receiver
(variant "raw"). Runs are interleaved: run 1 does every path, then run 2...

The data thread is pinned to CPU0 and the consumer to CPU1 unless
--no-pin. Thread counters come from the
eBPF probes when they load (--mode auto, exact), else from /proc
(estimates, marked ~; raw rows' syscalls then come from the path's ledger).

Both variants' sending sockets use TCP congestion control cubic unless
--tcp-cc says otherwise: with bbr (and no fq qdisc) TCP paces loopback
itself, and each Fetch response restarting from idle made it pace the
broker far more than the continuous raw loop. Without the privilege to set
cubic (CAP_NET_ADMIN, unless it is in net.ipv4.tcp_allowed_congestion_control)
the sockets keep the host's, and the table and every record say so.

--overhead measures what the eBPF probes cost: each run of each path and
variant is done twice, once with every probe attached (for that run only)
and once with nothing attached, in alternating order, and a table of
probed/unprobed ratios of throughput and data-thread CPU per GB follows
(medians; use --runs 9 or more, this is a noisy measurement). With --json
every record carries "overhead": "probed" or "unprobed". --floor adds
four measurements per run: the low-cost probes (--cost low, "low"), the
same sampled (--cost low --duty N, "low/N"; --duty, default 10), only
an empty sys_exit program ("floor", /proc counters: the price of any
syscall tracepoint on this kernel, below which no syscall-counting tool
can go), and only empty programs on the low-cost mode's tracepoints
("low-floor": the price of a program call at each socket send and
receive, page-cache read and context switch, below which the low-cost
mode cannot go).

--selectivity 1,0.1,0.01 measures features against speed: records get tag
headers and each consumer asks the broker (in its client id) for that share
of them. read and mmap filter in the broker; sendfile, splice and zerocopy
send whole batches and the consumer filters. Records add useful and wasted
bytes and CPU per useful GB; the table ends with the selectivity below which
mmap-with-filter costs less total CPU per useful GB than sendfile.
--chunks and --fetch-bytes repeat the sweep per size; --png FILE draws it.
--dead-letters N instead compares dead letters sent back by reference with
re-produced ones, per record, on every path.`

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Sweep every transfer path through the broker and raw, side by side",
		Long:  benchLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runBench(cmd, f) },
	}
	f.register(cmd)
	return cmd
}

// register declares the flags on cmd.
func (f *benchFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.sweep.add(fl)
	fl.StringVar(&f.paths, "paths", "all", "comma-separated transfer paths ("+strings.Join(transfer.Names(), ",")+")")
	fl.StringVar(&f.mode, "mode", "auto", "thread counters: auto, ebpf (exact, root) or proc (/proc estimates)")
	fl.StringVar(&f.variants, "variants", "all", "comma-separated variants (broker,raw)")
	fl.StringVar(&f.size, "size", "1GiB", "bytes of records to produce and consume per run")
	fl.IntVar(&f.runs, "runs", bench.DefaultRuns, "runs per path and variant (interleaved)")
	fl.StringVar(&f.chunk, "chunk", "64KiB", "bytes per syscall on the data thread")
	fl.StringVar(&f.rcvlowat, "rcvlowat", "", "SO_RCVLOWAT bytes on the consumer socket (default: kernel's)")
	fl.StringVar(&f.fetchMax, "fetch-max-bytes", "64MiB", "Fetch max_bytes (and per-partition max)")
	fl.BoolVar(&f.verify, "verify", false, "check every record batch's CRC-32C in the broker variant")
	fl.BoolVar(&f.asJSON, "json", false, "one JSON record per path, variant and run")
	fl.StringVar(&f.csvFile, "csv", "", "also write one CSV row per path, variant and run to FILE")
	fl.StringVar(&f.data, "data", "", "log directory (default: a temp dir, removed afterwards)")
	fl.IntVar(&f.fifo, "fifo", 0, "run data thread and consumer SCHED_FIFO at this priority (1-99, root) so other load cannot preempt them; as chrt -f PRIO does for other tools")
	fl.BoolVar(&f.noCork, "no-cork", false, "raw variant without TCP_CORK, as a bare syscall loop (needs --variants raw; the broker always corks)")
	fl.StringVar(&f.tcpCC, "tcp-cc", "", "TCP congestion control of both variants' sending sockets (default "+bench.DefaultCongestion+", or the host's with a note when setting it needs CAP_NET_ADMIN; \""+bench.SystemCongestion+"\": the host's; bbr paces loopback and the broker's responses restart it from idle; compare other tools under the same one)")
	fl.BoolVar(&f.overhead, "overhead", false, "measure the probes' cost: every run probed and unprobed, then a table of ratios (root)")
	fl.IntVar(&f.duty, "duty", 10, fmt.Sprintf("with --floor: the sampling of the sampled low-cost measurement (\"low/N\", as watch --cost low --duty N; 2 to %d)", probes.MaxDuty))
	fl.BoolVar(&f.floor, "floor", false, "with --overhead: also measure each run with the low-cost probes (--cost low, \"low\"; sampled, --duty, \"low/N\"), with only an empty sys_exit program (\"floor\": the kernel's price for any syscall tracepoint) and with only empty programs on the low-cost tracepoints (\"low-floor\")")
	fl.BoolVar(&f.noPin, "no-pin", false, "do not pin the data thread to CPU0 and the consumer to CPU1")
}

// runBench runs copyscope bench: the flags become a bench.Config, the
// counters are opened, the sweep runs and its results are written.
func runBench(cmd *cobra.Command, f benchFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if !f.asJSON {
		cfg.Progress = cmd.ErrOrStderr()
	}
	closeCounters, err := f.counters(&cfg, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeCounters()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.sweep.deadLetters > 0 {
		return f.sweep.runDeadLetters(ctx, cmd.OutOrStdout(), cfg, f.asJSON)
	}
	results, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return f.write(cmd.OutOrStdout(), results)
}

// splitList splits a comma-separated flag; "" and "all" mean every one.
func splitList(s string) []string {
	if s == "" || s == "all" {
		return nil
	}
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// config checks the flags and turns them into a bench.Config.
func (f benchFlags) config() (bench.Config, error) {
	cfg := bench.Config{Runs: f.runs, Verify: f.verify, DataDir: f.data, NoPin: f.noPin, FIFO: f.fifo, NoCork: f.noCork,
		Congestion: f.tcpCC, Paths: splitList(f.paths), Variants: splitList(f.variants)}
	if err := f.sweep.apply(&cfg); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Size, err = parseBytes(f.size); err != nil {
		return cfg, fmt.Errorf("--size: %w", err)
	}
	if cfg.Size == 0 {
		return cfg, fmt.Errorf("--size 0: give the bytes to produce, e.g. 1GiB")
	}
	n, err := parseBytes(f.chunk)
	if err != nil {
		return cfg, fmt.Errorf("--chunk: %w", err)
	}
	if n <= 0 || n > transfer.MaxChunk {
		return cfg, fmt.Errorf("--chunk %s: use 1 byte to %d MiB", f.chunk, transfer.MaxChunk>>20)
	}
	cfg.Chunk = int(n)
	if f.rcvlowat != "" {
		n, err := parseBytes(f.rcvlowat)
		if err != nil {
			return cfg, fmt.Errorf("--rcvlowat: %w", err)
		}
		if n > 1<<30 {
			return cfg, fmt.Errorf("--rcvlowat %s: at most 1GiB", f.rcvlowat)
		}
		cfg.RcvLowat = int(n)
	}
	m, err := parseBytes(f.fetchMax)
	if err != nil {
		return cfg, fmt.Errorf("--fetch-max-bytes: %w", err)
	}
	if m < 1<<10 || m > 1<<30 {
		return cfg, fmt.Errorf("--fetch-max-bytes %s: use 1KiB to 1GiB", f.fetchMax)
	}
	cfg.FetchMaxBytes = int32(m)
	if f.floor && !f.overhead {
		return cfg, fmt.Errorf("--floor is a variant of --overhead: add --overhead")
	}
	if f.duty < 2 || f.duty > probes.MaxDuty {
		return cfg, fmt.Errorf("--duty %d: use 2 to %d (the unsampled low-cost mode is measured as \"low\" anyway)", f.duty, probes.MaxDuty)
	}
	if f.overhead && f.mode != "auto" && f.mode != "ebpf" {
		return cfg, fmt.Errorf("--overhead compares the eBPF probes with nothing attached: drop --mode %s", f.mode)
	}
	return cfg, nil
}

// counters sets how cfg counts threads: the probe of --mode, or with
// --overhead the attachments each run is measured under. It returns what
// closes the probe.
func (f benchFlags) counters(cfg *bench.Config, stderr io.Writer) (func(), error) {
	if !f.overhead {
		tc, closeProbe, err := openBenchCounters(f.mode, stderr)
		cfg.Counters = tc
		return closeProbe, err
	}
	// Fail now, not after producing the log.
	p, err := probes.OpenEBPF(probes.EBPFOptions{})
	if err != nil {
		return func() {}, fmt.Errorf("--overhead needs the eBPF probes: %w (run as root, see copyscope doctor)", err)
	}
	p.Close()
	cfg.Overhead = []bench.Attachment{{Name: "probed", Open: func() (bench.ThreadCounters, func() error, error) {
		p, err := probes.OpenEBPF(probes.EBPFOptions{})
		if err != nil {
			return nil, nil, err
		}
		return bench.ProbeCounters(p), p.Close, nil
	}}}
	if f.floor {
		cfg.Overhead = append(cfg.Overhead, lowCostAttachment(1), lowCostAttachment(f.duty))
		cfg.Overhead = append(cfg.Overhead, floorAttachment("floor", probes.AttachFloor),
			floorAttachment("low-floor", probes.AttachLowFloor))
	}
	return func() {}, nil
}

// floorAttachment measures runs with only empty programs attached, their
// counters from /proc.
func floorAttachment(name string, attach func() (*probes.Floor, error)) bench.Attachment {
	return bench.Attachment{Name: name, Open: func() (bench.ThreadCounters, func() error, error) {
		fl, err := attach()
		if err != nil {
			return nil, nil, err
		}
		return bench.ProcCounters(), fl.Close, nil
	}}
}

// write writes the results: the CSV file if asked, then JSON lines or the
// summary table (and the overhead table with --overhead).
func (f benchFlags) write(out io.Writer, results []bench.Result) error {
	if f.csvFile != "" {
		if err := writeCSVFile(f.csvFile, results); err != nil {
			return err
		}
	}
	if err := f.sweep.chart(results); err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(out)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if f.overhead {
		var probed []bench.Result
		for _, r := range results {
			if r.Overhead == "probed" {
				probed = append(probed, r)
			}
		}
		if err := bench.WriteTable(out, bench.Summarize(probed), false); err != nil {
			return err
		}
		fmt.Fprintln(out)
		return bench.WriteOverhead(out, bench.SummarizeOverhead(results))
	}
	if ok, err := f.sweep.write(out, results); ok {
		return err
	}
	mode := metrics.ModeProc
	if len(results) > 0 {
		mode = results[0].Mode
	}
	return bench.WriteTable(out, bench.Summarize(results), mode == metrics.ModeProc)
}

// writeCSVFile writes one CSV row per result to path (--csv).
func writeCSVFile(path string, results []bench.Result) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--csv: %w", err)
	}
	if err := bench.WriteCSV(fh, results); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// openBenchCounters picks the thread counters bench reads: the eBPF probe
// (exact) or /proc (estimates); auto falls back to /proc with a warning.
func openBenchCounters(mode string, stderr io.Writer) (bench.ThreadCounters, func(), error) {
	noop := func() {}
	switch mode {
	case "proc":
		return bench.ProcCounters(), noop, nil
	case "ebpf", "auto", "":
		p, err := probes.OpenEBPF(probes.EBPFOptions{})
		if err == nil {
			return bench.ProbeCounters(p), func() { p.Close() }, nil
		}
		if mode == "ebpf" {
			return nil, noop, fmt.Errorf("eBPF probes: %w (run as root, see copyscope doctor, or use --mode proc for estimates)", err)
		}
		fmt.Fprintf(stderr, "copyscope: warning: eBPF probes not available (%s); bench uses /proc estimates\n", probes.ErrorSummary(err))
		return bench.ProcCounters(), noop, nil
	}
	return nil, noop, fmt.Errorf("unknown --mode %q (use auto, ebpf or proc)", mode)
}
