package bench

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// OverheadRow compares one path and variant with one attachment and with
// nothing attached (runs of Config.Overhead): medians over the runs of
// each, and their ratios.
type OverheadRow struct {
	Path, Variant    string
	Attached         string // the attachment's name (Result.Overhead)
	Chunk            int
	Runs             int     // pairs of runs
	GBpsProbed       float64 // median throughput with it attached
	GBpsUnprobed     float64 // and with nothing attached
	ThroughputRatio  float64 // attached / unprobed
	CPUProbed        float64 // median data-thread CPU ns per GB
	CPUUnprobed      float64
	CPURatio         float64 // attached / unprobed
	ConsumerCPURatio float64 // the consumer thread's CPU ns per GB, attached / unprobed (0: not measured)
}

// SummarizeOverhead pairs each attachment's runs of a path and variant
// with its unprobed runs. Results without an Overhead label are ignored.
func SummarizeOverhead(results []Result) []OverheadRow {
	type key struct{ path, variant string }
	var order []key
	var labels []string
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
		if r.Overhead != "unprobed" && !slices.Contains(labels, r.Overhead) {
			labels = append(labels, r.Overhead)
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
		u := groups[k]["unprobed"]
		for _, label := range labels {
			p := groups[k][label]
			if len(p) == 0 || len(u) == 0 {
				continue
			}
			row := OverheadRow{Path: k.path, Variant: k.variant, Attached: label, Chunk: p[0].Chunk, Runs: min(len(p), len(u))}
			gp, gu := medianOf(p, gbps), medianOf(u, gbps)
			row.GBpsProbed, row.GBpsUnprobed, row.ThroughputRatio = *gp, *gu, ratio(gp, gu)
			cp, cu := medianOf(p, cpu), medianOf(u, cpu)
			if cp != nil && cu != nil {
				row.CPUProbed, row.CPUUnprobed, row.CPURatio = *cp, *cu, ratio(cp, cu)
			}
			row.ConsumerCPURatio = ratio(medianOf(p, consumer), medianOf(u, consumer))
			out = append(out, row)
		}
	}
	return out
}

// WriteOverhead prints the overhead table, one row per path, variant and
// attachment, each against the same path and variant with nothing
// attached.
func WriteOverhead(w io.Writer, rows []OverheadRow) error {
	fmt.Fprintln(w, "overhead: each attachment vs nothing attached (unprobed), medians of interleaved runs in this process")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "path\tvariant\tattached\tchunk\tpairs\tGB/s attached\tunprobed\tthroughput ratio\tdata cpu_ns/GB attached\tunprobed\tcpu/GB ratio\tconsumer cpu/GB ratio\t\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.3f\t%.3g\t%.3g\t%.3f\t%s\t\n",
			r.Path, r.Variant, r.Attached, r.Chunk, r.Runs, r.GBpsProbed, r.GBpsUnprobed, r.ThroughputRatio,
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
