package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/demo"
	"github.com/copyscope/copyscope/tui"
)

// demoFlags are copyscope demo's options, as given.
type demoFlags struct {
	paths, chunk, rate, rcvlowat, preload string
	fetch                                 string
	mode, data, probe, record             string
	duration, interval, slot              time.Duration
	asJSON                                bool
	prom                                  promFlags
	filterShare                           float64
}

const demoLong = `demo starts the embedded broker on 127.0.0.1 with one listener per transfer
path, a producer (franz-go, through the Kafka protocol) and one consumer per
path on its own OS thread, attaches the probes to every broker data thread
and consumer thread, and shows what each path costs, side by side.

Modes: fair (every path delivers the same --rate, so costs per GB compare)
and race (each path alone at full speed for --race-slot, in turn).
On a terminal it is a live UI (keys: q quit, p pause, r reset, m mode,
c chunk, f fetch size, t tag filter, d dead letters, 1-9 paths (toggle a path column, uring ones included), ? help); otherwise it prints one line per path per
interval, or JSON records with --json: per interval one record per path
(kind "path") and one per path's consumer threads (kind "thread", subject
"consumer:<path>"). Without eBPF permission it falls back to /proc
estimates and says so.`

func newDemoCmd() *cobra.Command {
	def := demo.DefaultConfig()
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Broker, producer, one consumer per transfer path and probes, side by side live",
		Long:  demoLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(def)
			if err != nil {
				return err
			}
			exp, err := demoExporter(cmd, &cfg, f.prom)
			if err != nil {
				return err
			}
			defer exp.close()
			return runDemo(cmd, cfg, f.duration, f.asJSON, f.record)
		},
	}
	f.register(cmd, def)
	return cmd
}

// register declares the flags on cmd, with def's defaults.
func (f *demoFlags) register(cmd *cobra.Command, def demo.Config) {
	fl := cmd.Flags()
	fl.StringVar(&f.paths, "paths", strings.Join(def.Paths, ","), "transfer paths to run, comma-separated")
	fl.StringVar(&f.chunk, "chunk", "64KiB", "bytes per data-path syscall (4K, 64K, 1M; key c cycles)")
	fl.StringVar(&f.fetch, "fetch-bytes", "1MiB", "consumers' Fetch max_bytes (bench uses 64MiB: set it to compare; key f cycles 256K, 1M, 64M)")
	fl.Float64Var(&f.filterShare, "filter", 1, "share of records the consumers ask the broker for with a tag filter (0.5, 0.1, 0.01; 1: none; key t cycles): read and mmap filter in the broker, the other paths send whole batches")
	fl.StringVar(&f.rate, "rate", "200MB", "fair mode: bytes per second per path")
	fl.StringVar(&f.rcvlowat, "rcvlowat", "0", "consumers' SO_RCVLOWAT in bytes (0: kernel default)")
	fl.StringVar(&f.preload, "preload", "64MiB", "bytes produced before the consumers start")
	fl.StringVar(&f.mode, "mode", def.Mode, "fair or race")
	fl.DurationVar(&f.slot, "race-slot", def.RaceSlot, "race mode: how long each path runs alone")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until q or Ctrl-C)")
	fl.DurationVar(&f.interval, "interval", def.Interval, "sampling interval")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON records (one per subject per interval) instead of the UI")
	fl.StringVar(&f.data, "data", "", "log directory (default: a temporary one, removed on exit)")
	fl.StringVar(&f.probe, "probe", def.Probe, "probe backend: auto (eBPF, else /proc), ebpf or proc")
	fl.StringVar(&f.record, "record", "", "also write every sample as a JSON line to this file (UI test fixtures)")
	fl.MarkHidden("record")
	f.prom.register(fl)
}

// config checks the flags and turns them into a demo.Config.
func (f demoFlags) config(def demo.Config) (demo.Config, error) {
	cfg := def
	cfg.Mode, cfg.DataDir, cfg.Probe = f.mode, f.data, f.probe
	cfg.Interval, cfg.RaceSlot = f.interval, f.slot
	if f.filterShare < 0 || f.filterShare > 1 {
		return cfg, fmt.Errorf("--filter %g: give the share of records to keep, in (0, 1] (1: no filter)", f.filterShare)
	}
	cfg.Filter = f.filterShare
	cfg.Paths = nil
	for _, p := range strings.Split(f.paths, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Paths = append(cfg.Paths, p)
		}
	}
	sizes := []struct {
		name, val string
		set       func(int64)
	}{
		{"--chunk", f.chunk, func(n int64) { cfg.Chunk = int(n) }},
		{"--rate", f.rate, func(n int64) { cfg.Rate = float64(n) }},
		{"--rcvlowat", f.rcvlowat, func(n int64) { cfg.RcvLowat = int(n) }},
		{"--preload", f.preload, func(n int64) { cfg.Preload = n }},
		{"--fetch-bytes", f.fetch, func(n int64) { cfg.FetchBytes = int(n) }},
	}
	for _, sz := range sizes {
		n, err := parseBytes(sz.val)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", sz.name, err)
		}
		sz.set(n)
	}
	return cfg, nil
}

func runDemo(cmd *cobra.Command, cfg demo.Config, duration time.Duration, asJSON bool, record string) error {
	// SIGPIPE too: output piped into head must still stop cleanly (remove
	// the temp dir, detach the probes) rather than kill the process.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	d, err := demo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	samples := d.Samples()
	if record != "" {
		samples, err = recordSamples(ctx, record, samples)
		if err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if isTerminal(out) && !asJSON {
		ui := tui.Config{
			Title:      "copyscope demo",
			Kernel:     kernelRelease(),
			Demo:       true,
			Subjects:   cfg.Paths,
			Mode:       cfg.Mode,
			Rate:       cfg.Rate,
			Chunk:      cfg.Chunk,
			Fetch:      cfg.FetchBytes,
			Filter:     cfg.Filter,
			Controller: d,
		}
		if err := tui.Run(ctx, ui, samples, nil, nil); err != nil {
			return err
		}
		return d.Close()
	}
	w := bufio.NewWriter(out)
	if !asJSON {
		fmt.Fprintf(w, "copyscope demo: kernel %s, probes %s, paths %s, mode %s, chunk %d, fetch %d\n", kernelRelease(), modeLabel(string(d.ProbeMode())), strings.Join(cfg.Paths, ","), cfg.Mode, cfg.Chunk, cfg.FetchBytes)
		for _, n := range d.Notes() {
			fmt.Fprintln(w, "note:", n)
		}
		w.Flush()
	}
	enc := json.NewEncoder(w)
	for s := range samples {
		if asJSON {
			for _, r := range s.Records {
				enc.Encode(r)
			}
			for _, p := range cfg.Paths {
				if c, ok := s.Consumers[p]; ok {
					enc.Encode(c)
				}
			}
		} else {
			for _, l := range tui.PlainLines(s) {
				fmt.Fprintln(w, l)
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return d.Close()
}

// recordSamples copies every sample to a JSON-lines file on its way to
// the output.
func recordSamples(ctx context.Context, path string, in <-chan tui.Sample) (<-chan tui.Sample, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--record: %w", err)
	}
	out := make(chan tui.Sample, 1)
	go func() {
		defer close(out)
		defer f.Close()
		enc := json.NewEncoder(f)
		for s := range in {
			enc.Encode(s)
			select {
			case out <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// modeLabel names a probe mode for people.
func modeLabel(m string) string {
	if m == "proc" {
		return "/proc (estimates)"
	}
	return "eBPF (exact)"
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
