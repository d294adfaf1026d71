package probes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/copyscope/copyscope/metrics"
)

// Sampler reads a probe on a fixed tick, groups each reading into a
// snapshot and hands every interval's records to a consumer: the seam
// between a probe and watch's line printer or the TUI.
type Sampler struct {
	probe    Probe
	group    func(Reading) metrics.Snapshot
	interval time.Duration
}

// NewSampler samples p every interval, grouping readings with group (for
// example NewGrouper(ByProcess).Snapshot).
func NewSampler(p Probe, group func(Reading) metrics.Snapshot, interval time.Duration) *Sampler {
	return &Sampler{probe: p, group: group, interval: interval}
}

// ErrStopSampling, returned by an emit function, ends Run without error.
var ErrStopSampling = errors.New("stop sampling")

// Run takes a baseline reading, then at every tick calls emit with the
// previous and current snapshots and one record per subject over the
// measured interval (never the nominal one). When ctx is done it emits a
// last, shorter interval up to that moment and returns nil; it also returns
// when emit returns ErrStopSampling (nil) or another error (that
// error), or when the probe cannot be read.
func (s *Sampler) Run(ctx context.Context, emit func(prev, cur metrics.Snapshot, recs []metrics.Record) error) error {
	if s.interval <= 0 {
		return fmt.Errorf("sample interval %v: must be positive (e.g. 1s)", s.interval)
	}
	r, err := s.probe.Read()
	if err != nil {
		return fmt.Errorf("first probe reading: %w", err)
	}
	prev := s.group(r)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		last := false
		select {
		case <-ctx.Done():
			last = true // one final, shorter interval: nothing is lost on stop
		case <-tick.C:
		}
		r, err := s.probe.Read()
		if err != nil {
			return fmt.Errorf("probe reading: %w", err)
		}
		cur := s.group(r)
		if err := emit(prev, cur, metrics.Records(prev, cur)); err != nil {
			if errors.Is(err, ErrStopSampling) {
				return nil
			}
			return err
		}
		if last {
			return nil
		}
		prev = cur
	}
}
