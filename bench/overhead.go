package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// OverheadRow compares one path and variant probed and unprobed (runs of
// Config.Overhead): medians over the runs of each, and their ratios.
type OverheadRow struct {
	Path, Variant    string
	Chunk            int
	Runs             int     // pairs of runs
	GBpsProbed       float64 // median throughput with the probes attached
	GBpsUnprobed     float64 // and with nothing attached
	ThroughputRatio  float64 // probed / unprobed
	CPUProbed        float64 // median data-thread CPU ns per GB
	CPUUnprobed      float64
	CPURatio         float64 // probed / unprobed
	ConsumerCPURatio float64 // the consumer thread's CPU ns per GB, probed / unprobed (0: not measured)
}

// SummarizeOverhead pairs the probed and unprobed runs of each path and
// variant. Results without an Overhead label are ignored.
func SummarizeOverhead(results []Result) []OverheadRow {
	type key struct{ path, variant string }
	var order []key
	groups := map[key]map[string][]Result{}
	for _, r := range results {
		if r.Overhead == "" {
			continue
		}
		k := key{r.Path, r.Variant}
		if groups[k] == nil {
			order = append(order, k)
			groups[k] = map[string][]Result{}
		}
		groups[k][r.Overhead] = append(groups[k][r.Overhead], r)
	}
	gbps := func(r Result) (float64, bool) { return r.ThroughputBytesPerS / 1e9, true }
	cpu := func(r Result) (float64, bool) {
		if r.CPUNsPerGB == nil {
			return 0, false
		}
		return *r.CPUNsPerGB, true
	}
	consumer := func(r Result) (float64, bool) {
		if r.ConsumerCPUNs == nil || r.DeliveredBytes == nil || *r.DeliveredBytes == 0 {
			return 0, false
		}
		return float64(*r.ConsumerCPUNs) / (float64(*r.DeliveredBytes) / 1e9), true
	}
	ratio := func(a, b *float64) float64 {
		if a == nil || b == nil || *b == 0 {
			return 0
		}
		return *a / *b
	}
	var out []OverheadRow
	for _, k := range order {
		p, u := groups[k]["probed"], groups[k]["unprobed"]
		if len(p) == 0 || len(u) == 0 {
			continue
		}
		row := OverheadRow{Path: k.path, Variant: k.variant, Chunk: p[0].Chunk, Runs: min(len(p), len(u))}
		gp, gu := medianOf(p, gbps), medianOf(u, gbps)
		row.GBpsProbed, row.GBpsUnprobed, row.ThroughputRatio = *gp, *gu, ratio(gp, gu)
		cp, cu := medianOf(p, cpu), medianOf(u, cpu)
		if cp != nil && cu != nil {
			row.CPUProbed, row.CPUUnprobed, row.CPURatio = *cp, *cu, ratio(cp, cu)
		}
		row.ConsumerCPURatio = ratio(medianOf(p, consumer), medianOf(u, consumer))
		out = append(out, row)
	}
	return out
}

// WriteOverhead prints the probe overhead table; probed says what was
// attached in the probed runs.
func WriteOverhead(w io.Writer, probed string, rows []OverheadRow) error {
	fmt.Fprintf(w, "probe overhead: %s (probed) vs nothing attached (unprobed), medians of interleaved runs in this process\n", probed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tvariant\tchunk\tpairs\tGB/s probed\tunprobed\tthroughput ratio\tdata cpu_ns/GB probed\tunprobed\tcpu/GB ratio\tconsumer cpu/GB ratio\t\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.3f\t%.3g\t%.3g\t%.3f\t%s\t\n",
			r.Path, r.Variant, r.Chunk, r.Runs, r.GBpsProbed, r.GBpsUnprobed, r.ThroughputRatio,
			r.CPUProbed, r.CPUUnprobed, r.CPURatio, fmtRatio(r.ConsumerCPURatio))
	}
	return tw.Flush()
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}
