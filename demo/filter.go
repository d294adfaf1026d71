package demo

import (
	"fmt"
	"sync/atomic"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/tagmix"
	"github.com/copyscope/copyscope/tui"
)

// The demo's filter view: every produced record carries a tag of the
// tagmix workload; key t (tui.ActionFilter) makes every consumer ask the
// broker for a share of them through its client id. read and mmap then
// send only the matches; the by-reference paths send whole batches and
// the consumer keeps the matches itself. Each consumer counts the bytes it
// wanted and the ones it threw away, which become the path records'
// useful_bytes and wasted_bytes.

// filterCounts are one path's consumer's useful and wasted record bytes.
type filterCounts struct {
	useful, wasted atomic.Int64
}

// filterState is the demo's per-path counts and the previous sample's.
type filterState struct {
	counts     map[string]*filterCounts
	prevUseful map[string]int64
	prevWasted map[string]int64
}

func newFilterState(paths []string) *filterState {
	fs := &filterState{counts: map[string]*filterCounts{}, prevUseful: map[string]int64{}, prevWasted: map[string]int64{}}
	for _, p := range paths {
		fs.counts[p] = &filterCounts{}
	}
	return fs
}

// consumerFilter is a consumer connection's client id and batch check for
// selectivity share (1: no filter).
func (d *Demo) consumerFilter(path string, share float64) (string, func([]byte) (int64, error), error) {
	expr := tagmix.Expr(share)
	if expr == "" {
		return "copyscope-demo", nil, nil
	}
	f, err := log.ParseFilter(expr)
	if err != nil {
		return "", nil, fmt.Errorf("demo filter %g: %w", share, err)
	}
	c := d.filt.counts[path]
	keep := func(batch []byte) (int64, error) {
		u, err := tagmix.Useful(f, batch)
		c.useful.Add(u)
		c.wasted.Add(int64(len(batch)) - u)
		return u, err
	}
	return "copyscope-demo filter=" + expr, keep, nil
}

// addFilterFields puts each path's useful and wasted bytes of the interval
// into its record while a filter runs.
func (d *Demo) addFilterFields(s *tui.Sample, share float64) {
	for i := range s.Records {
		r := &s.Records[i]
		c, ok := d.filt.counts[r.Subject]
		if !ok {
			continue
		}
		u, w := c.useful.Load(), c.wasted.Load()
		du, dw := u-d.filt.prevUseful[r.Subject], w-d.filt.prevWasted[r.Subject]
		d.filt.prevUseful[r.Subject], d.filt.prevWasted[r.Subject] = u, w
		if share <= 0 || share >= 1 || du < 0 || dw < 0 {
			continue
		}
		uu, ww := uint64(du), uint64(dw)
		r.UsefulBytes, r.WastedBytes = &uu, &ww
	}
}

// tagHeaders are the tag values the producer stamps records with, by bucket.
func tagHeaders() [][]byte {
	tags := make([][]byte, tagmix.Buckets)
	for i := range tags {
		tags[i] = []byte(tagmix.Tag(i))
	}
	return tags
}
