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

func newBenchCmd() *cobra.Command {
	var (
		paths, variants, size, chunk, mode, rcvlowat, fetchMax, csvFile, data, tcpCC string
		runs, fifo                                                                   int
		verify, asJSON, noPin, noCork, overhead, floor                               bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Sweep every transfer path through the broker and raw, side by side",
		Long: `bench produces --size bytes of ~1 KiB records into a fresh log, starts the
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
every record carries "overhead": "probed" or "unprobed". --floor adds a
third measurement per run with only an empty sys_exit program attached
("overhead": "floor", /proc counters): the price of any syscall tracepoint
on this kernel, below which no tracepoint-based tool can go.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := bench.Config{Runs: runs, Verify: verify, DataDir: data, NoPin: noPin, FIFO: fifo, NoCork: noCork, Congestion: tcpCC}
			if paths != "" && paths != "all" {
				for _, p := range strings.Split(paths, ",") {
					if p = strings.TrimSpace(p); p != "" {
						cfg.Paths = append(cfg.Paths, p)
					}
				}
			}
			if variants != "" && variants != "all" {
				for _, v := range strings.Split(variants, ",") {
					if v = strings.TrimSpace(v); v != "" {
						cfg.Variants = append(cfg.Variants, v)
					}
				}
			}
			var err error
			if cfg.Size, err = parseBytes(size); err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			if cfg.Size == 0 {
				return fmt.Errorf("--size 0: give the bytes to produce, e.g. 1GiB")
			}
			n, err := parseBytes(chunk)
			if err != nil {
				return fmt.Errorf("--chunk: %w", err)
			}
			if n <= 0 || n > transfer.MaxChunk {
				return fmt.Errorf("--chunk %s: use 1 byte to %d MiB", chunk, transfer.MaxChunk>>20)
			}
			cfg.Chunk = int(n)
			if rcvlowat != "" {
				n, err := parseBytes(rcvlowat)
				if err != nil {
					return fmt.Errorf("--rcvlowat: %w", err)
				}
				if n > 1<<30 {
					return fmt.Errorf("--rcvlowat %s: at most 1GiB", rcvlowat)
				}
				cfg.RcvLowat = int(n)
			}
			m, err := parseBytes(fetchMax)
			if err != nil {
				return fmt.Errorf("--fetch-max-bytes: %w", err)
			}
			if m < 1<<10 || m > 1<<30 {
				return fmt.Errorf("--fetch-max-bytes %s: use 1KiB to 1GiB", fetchMax)
			}
			cfg.FetchMaxBytes = int32(m)
			if !asJSON {
				cfg.Progress = cmd.ErrOrStderr()
			}
			if floor && !overhead {
				return fmt.Errorf("--floor is a variant of --overhead: add --overhead")
			}
			if overhead {
				if mode != "auto" && mode != "ebpf" {
					return fmt.Errorf("--overhead compares the eBPF probes with nothing attached: drop --mode %s", mode)
				}
				// Fail now, not after producing the log.
				p, err := probes.OpenEBPF(probes.EBPFOptions{})
				if err != nil {
					return fmt.Errorf("--overhead needs the eBPF probes: %w (run as root, see copyscope doctor)", err)
				}
				p.Close()
				cfg.Overhead = []bench.Attachment{{Name: "probed", Open: func() (bench.ThreadCounters, func() error, error) {
					p, err := probes.OpenEBPF(probes.EBPFOptions{})
					if err != nil {
						return nil, nil, err
					}
					return bench.ProbeCounters(p), p.Close, nil
				}}}
				if floor {
					cfg.Overhead = append(cfg.Overhead, bench.Attachment{Name: "floor", Open: func() (bench.ThreadCounters, func() error, error) {
						f, err := probes.AttachFloor()
						if err != nil {
							return nil, nil, err
						}
						return bench.ProcCounters(), f.Close, nil
					}})
				}
			} else {
				tc, closeProbe, err := openBenchCounters(mode, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				defer closeProbe()
				cfg.Counters = tc
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			results, err := bench.Run(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if csvFile != "" {
				f, err := os.Create(csvFile)
				if err != nil {
					return fmt.Errorf("--csv: %w", err)
				}
				if err := bench.WriteCSV(f, results); err != nil {
					f.Close()
					return fmt.Errorf("write %s: %w", csvFile, err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("write %s: %w", csvFile, err)
				}
			}
			if asJSON {
				enc := json.NewEncoder(out)
				for _, r := range results {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
				return nil
			}
			if overhead {
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
			mode := metrics.ModeProc
			if len(results) > 0 {
				mode = results[0].Mode
			}
			return bench.WriteTable(out, bench.Summarize(results), mode == metrics.ModeProc)
		},
	}
	f := cmd.Flags()
	f.StringVar(&paths, "paths", "all", "comma-separated transfer paths ("+strings.Join(transfer.Names(), ",")+")")
	f.StringVar(&mode, "mode", "auto", "thread counters: auto, ebpf (exact, root) or proc (/proc estimates)")
	f.StringVar(&variants, "variants", "all", "comma-separated variants (broker,raw)")
	f.StringVar(&size, "size", "1GiB", "bytes of records to produce and consume per run")
	f.IntVar(&runs, "runs", bench.DefaultRuns, "runs per path and variant (interleaved)")
	f.StringVar(&chunk, "chunk", "64KiB", "bytes per syscall on the data thread")
	f.StringVar(&rcvlowat, "rcvlowat", "", "SO_RCVLOWAT bytes on the consumer socket (default: kernel's)")
	f.StringVar(&fetchMax, "fetch-max-bytes", "64MiB", "Fetch max_bytes (and per-partition max)")
	f.BoolVar(&verify, "verify", false, "check every record batch's CRC-32C in the broker variant")
	f.BoolVar(&asJSON, "json", false, "one JSON record per path, variant and run")
	f.StringVar(&csvFile, "csv", "", "also write one CSV row per path, variant and run to FILE")
	f.StringVar(&data, "data", "", "log directory (default: a temp dir, removed afterwards)")
	f.IntVar(&fifo, "fifo", 0, "run data thread and consumer SCHED_FIFO at this priority (1-99, root) so other load cannot preempt them; as chrt -f PRIO does for other tools")
	f.BoolVar(&noCork, "no-cork", false, "raw variant without TCP_CORK, as a bare syscall loop (needs --variants raw; the broker always corks)")
	f.StringVar(&tcpCC, "tcp-cc", "", "TCP congestion control of both variants' sending sockets (default "+bench.DefaultCongestion+", or the host's with a note when setting it needs CAP_NET_ADMIN; \""+bench.SystemCongestion+"\": the host's; bbr paces loopback and the broker's responses restart it from idle; compare other tools under the same one)")
	f.BoolVar(&overhead, "overhead", false, "measure the probes' cost: every run probed and unprobed, then a table of ratios (root)")
	f.BoolVar(&floor, "floor", false, "with --overhead: also measure each run with only an empty sys_exit program attached (the kernel's price for any syscall tracepoint)")
	f.BoolVar(&noPin, "no-pin", false, "do not pin the data thread to CPU0 and the consumer to CPU1")
	return cmd
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
