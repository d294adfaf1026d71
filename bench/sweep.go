package bench

import (
	"context"
	"fmt"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/kfetch"
	"github.com/copyscope/copyscope/internal/tagmix"
)

// The selectivity sweep. With Config.Selectivity every record carries a
// tag header "pNN", its tag bucket NN = (sequence * 37) mod 100: a fixed
// permutation, so every 64-record batch holds 64 different buckets and
// each selectivity's matches are spread evenly over all batches (the hard
// case for a per-batch tag index, which can then skip nothing). A
// selectivity s keeps the buckets below round(100 s) with the filter
// "p00||p01||...", asked of the broker in the consumer's client id. The
// consumer checks every record it receives against the same filter (the
// client-side check every Kafka consumer does) and counts the bytes it
// wanted (useful) and the rest (wasted); the bench's own arithmetic says
// what the useful bytes must be.
const tagBuckets = tagmix.Buckets

// recordTag is the tag bucket of the record with value sequence seq.
func recordTag(seq uint64) int { return tagmix.Bucket(seq) }

func tagName(bucket int) string { return tagmix.Tag(bucket) }

// bucketCut is the number of tag buckets selectivity s keeps.
func bucketCut(s float64) int { return tagmix.Cut(s) }

// selection is one selectivity of the sweep, as the consumer runs it.
type selection struct {
	s      float64
	expr   string      // "" for s = 1: nothing asked of the broker
	filter *log.Filter // nil for s = 1
	useful int64       // the bytes the consumer must find useful
}

// newSelection builds selectivity s's filter; useful comes from produce.
func newSelection(s float64, useful int64) (*selection, error) {
	sel := &selection{s: s, useful: useful}
	sel.expr = tagmix.Expr(s)
	if sel.expr == "" {
		return sel, nil
	}
	f, err := log.ParseFilter(sel.expr)
	if err != nil {
		return nil, fmt.Errorf("selectivity %g: %w", s, err)
	}
	sel.filter = f
	return sel, nil
}

// clientID asks the broker for the filter (see broker/kafka's filter.go).
func (sel *selection) clientID() string {
	if sel == nil || sel.expr == "" {
		return "bench"
	}
	return "bench filter=" + sel.expr
}

// keep is the consumer's own check of a received batch: the bytes of its
// matching records plus its header when any matched.
func (sel *selection) keep(batch []byte) (int64, error) { return tagmix.Useful(sel.filter, batch) }

// checkSweep checks the sweep's lists: selectivities, chunks, fetch sizes.
func checkSweep(c *Config) error {
	for _, fb := range c.FetchSizes {
		if fb <= 0 || fb > kfetch.MaxResponse {
			return fmt.Errorf("fetch size %d in --fetch-bytes out of range 1..%d", fb, kfetch.MaxResponse)
		}
	}
	for _, ch := range c.Chunks {
		if ch <= 0 || ch > transfer.MaxChunk {
			return fmt.Errorf("chunk %d in --chunks out of range 1..%d", ch, transfer.MaxChunk)
		}
	}
	return checkSelectivity(c.Selectivity)
}

func checkSelectivity(list []float64) error {
	for _, s := range list {
		if !(s > 0 && s <= 1) || bucketCut(s) < 1 {
			return fmt.Errorf("selectivity %g out of range: use fractions in [0.01, 1] (records carry %d tag buckets)", s, tagBuckets)
		}
	}
	return nil
}

// sweepFields are the sweeps' figures: the Fetch size on every broker
// record, the filter figures only in a selectivity sweep (absent otherwise).
// throughput_bytes_per_s stays the log's bytes consumed per second
// (useful, skipped and wasted alike); these say what of it was wanted.
type sweepFields struct {
	// FetchMaxBytes is the broker variant's Fetch max_bytes.
	FetchMaxBytes int32    `json:"fetch_max_bytes,omitempty"`
	Selectivity   *float64 `json:"selectivity,omitempty"`
	// FilteredBy is "broker" when the path filtered in the broker (read,
	// mmap), "consumer" when whole batches came and the consumer did it.
	FilteredBy               string   `json:"filtered_by,omitempty"`
	UsefulBytesPerS          *float64 `json:"useful_bytes_per_s,omitempty"`
	CPUNsPerUsefulGB         *float64 `json:"cpu_ns_per_useful_gb,omitempty"` // the data thread's
	ConsumerCPUNsPerUsefulGB *float64 `json:"consumer_cpu_ns_per_useful_gb,omitempty"`
	TotalCPUNsPerUsefulGB    *float64 `json:"total_cpu_ns_per_useful_gb,omitempty"` // data thread plus consumer
}

// setFilterFields fills r's sweep figures from what the consumer counted.
func setFilterFields(r *Result, sel *selection, useful, wasted int64, filteredBy string) {
	s := sel.s
	r.Selectivity = &s
	r.FilteredBy = filteredBy
	u, w := uint64(useful), uint64(wasted)
	r.UsefulBytes, r.WastedBytes = &u, &w
	if useful <= 0 || r.Seconds <= 0 {
		return
	}
	gb := float64(useful) / 1e9
	ups := float64(useful) / r.Seconds
	r.UsefulBytesPerS = &ups
	var total float64
	have := 0
	if r.CPUNs != nil {
		v := float64(*r.CPUNs) / gb
		r.CPUNsPerUsefulGB = &v
		total += v
		have++
	}
	if r.ConsumerCPUNs != nil {
		v := float64(*r.ConsumerCPUNs) / gb
		r.ConsumerCPUNsPerUsefulGB = &v
		total += v
		have++
	}
	if have == 2 {
		r.TotalCPUNsPerUsefulGB = &total
	}
}

// sweepRuns runs every selectivity in turn: all runs of all paths at one
// selectivity, then the next. The raw variant has no filter and runs only
// at selectivity 1.
func sweepRuns(ctx context.Context, srv fetchServer, cfg Config, spans []transfer.Span, end, bytes int64, useful map[int]int64) ([]Result, error) {
	var out []Result
	for _, s := range cfg.Selectivity {
		sel, err := newSelection(s, useful[bucketCut(s)])
		if err != nil {
			return out, err
		}
		c := cfg
		c.sel = sel
		if sel.filter != nil {
			c.Variants = []string{"broker"}
		}
		fmt.Fprintf(cfg.Progress, "selectivity %g: %d of %d tag buckets, %d useful bytes of %d\n", s, bucketCut(s), tagBuckets, sel.useful, bytes)
		rs, err := runs(ctx, srv, c, spans, end, bytes)
		for i := range rs {
			if rs[i].Variant == "raw" {
				setFilterFields(&rs[i], sel, bytes, 0, "")
			}
		}
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
