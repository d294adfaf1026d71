package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/copyscope/copyscope/bench"
	"github.com/copyscope/copyscope/metrics"
)

// sweepFlags are bench's sweep options: the selectivity of broker-side
// filters (and, with it, the sweep table instead of the path table).
type sweepFlags struct {
	selectivity, chunks, png, fetches, tagSpread string
	deadLetters                                  int
}

func (s *sweepFlags) add(f *pflag.FlagSet) {
	f.IntVar(&s.deadLetters, "dead-letters", 0, "instead of the sweep: send N dead letters over every path's listener, by reference (the broker copies the original from its log) and by re-producing the whole record (the client-side way), and report each one's cost per record")
	f.StringVar(&s.fetches, "fetch-bytes", "", "comma-separated Fetch max_bytes to sweep (e.g. 1MiB,64MiB); each runs every path (replaces --fetch-max-bytes)")
	f.StringVar(&s.tagSpread, "tag-spread", "record", "with --selectivity: \"record\" spreads the tags over every batch's records (the tag index can skip nothing), \"batch\" gives each batch one tag (matches cluster; the index skips whole batches)")
	f.StringVar(&s.chunks, "chunks", "", "comma-separated chunk sizes to sweep (e.g. 4KiB,64KiB,1MiB); each runs every path with the broker restarted at that chunk (replaces --chunk)")
	f.StringVar(&s.png, "png", "", "draw a PNG chart to FILE: total CPU per useful GB against selectivity per path with the mmap/sendfile crossover (with --selectivity), else throughput and CPU per GB against chunk size per path")
	f.StringVar(&s.selectivity, "selectivity", "", "comma-separated shares of records a tag filter keeps (e.g. 1,0.1,0.01): records get tags, read and mmap filter in the broker, sendfile/splice/zerocopy send whole batches and the consumer filters; reports useful and wasted bytes and CPU per useful GB, and the mmap/sendfile crossover")
}

// apply puts the parsed sweep into cfg.
func (s *sweepFlags) apply(cfg *bench.Config) error {
	if s.chunks != "" {
		for _, c := range strings.Split(s.chunks, ",") {
			n, err := parseBytes(strings.TrimSpace(c))
			if err != nil {
				return fmt.Errorf("--chunks %q: %w", s.chunks, err)
			}
			cfg.Chunks = append(cfg.Chunks, int(n))
		}
	}
	if s.fetches != "" {
		for _, c := range strings.Split(s.fetches, ",") {
			n, err := parseBytes(strings.TrimSpace(c))
			if err != nil || n <= 0 || n > 1<<31-1 {
				return fmt.Errorf("--fetch-bytes %q: %q is not a size in 1..2GiB (%v)", s.fetches, c, err)
			}
			cfg.FetchSizes = append(cfg.FetchSizes, int32(n))
		}
	}
	switch s.tagSpread {
	case "record", "":
	case "batch":
		cfg.TagPerBatch = true
	default:
		return fmt.Errorf("--tag-spread %q: use record or batch", s.tagSpread)
	}
	if s.selectivity == "" {
		return nil
	}
	for _, f := range strings.Split(s.selectivity, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("--selectivity %q: %q is not a number (write fractions such as 1,0.1,0.01)", s.selectivity, f)
		}
		cfg.Selectivity = append(cfg.Selectivity, v)
	}
	return nil
}

// write prints the sweep table when a sweep ran; false when it did not.
func (s *sweepFlags) write(out io.Writer, results []bench.Result) (bool, error) {
	if s.selectivity == "" {
		return false, nil
	}
	estimate := len(results) > 0 && results[0].Mode == metrics.ModeProc
	return true, bench.WriteSweep(out, bench.SummarizeSweep(results), estimate)
}

// chart draws --png, if asked.
func (s *sweepFlags) chart(results []bench.Result) error {
	switch {
	case s.png == "":
		return nil
	case s.selectivity != "":
		return bench.SweepChart(s.png, bench.SummarizeSweep(results))
	}
	var broker []bench.Result
	for _, r := range results {
		if r.Overhead == "" || r.Overhead == "probed" {
			broker = append(broker, r)
		}
	}
	return bench.ChunkChart(s.png, bench.Summarize(broker))
}

// runDeadLetters runs the dead-letter comparison and prints it.
func (s *sweepFlags) runDeadLetters(ctx context.Context, out io.Writer, cfg bench.Config, asJSON bool) error {
	rs, err := bench.DeadLetters(ctx, cfg, s.deadLetters)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		for _, r := range rs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return bench.WriteDeadLetters(out, rs)
}
