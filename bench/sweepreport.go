package bench

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// SweepPoint is the median of one path's broker variant at one
// selectivity over its runs.
type SweepPoint struct {
	Path        string
	Selectivity float64
	FilteredBy  string // "broker", "consumer" or "" (no filter)
	Runs        int
	// Medians (GB = 1e9 bytes); nil when not measured.
	GBps          float64  // log bytes consumed per second
	UsefulGBps    *float64 // useful bytes per second
	WastedShare   *float64 // wasted / delivered record bytes
	DataCPU       *float64 // data thread ns per useful GB
	ConsumerCPU   *float64 // consumer ns per useful GB
	TotalCPU      *float64 // both
	DeliveredGB   *float64
	UsefulGB      *float64
	WastedGB      *float64
	CPUNsPerGBRaw *float64 // data thread ns per delivered GB
}

// SummarizeSweep groups a sweep's broker records by selectivity and path
// (in first-seen order; chunk sizes together) and takes medians.
func SummarizeSweep(results []Result) []SweepPoint {
	type key struct {
		s    float64
		path string
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		if r.Variant != "broker" || r.Selectivity == nil {
			continue
		}
		k := key{*r.Selectivity, r.Path}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []SweepPoint
	for _, k := range order {
		rs := groups[k]
		p := SweepPoint{Path: k.path, Selectivity: k.s, FilteredBy: rs[0].FilteredBy, Runs: len(rs)}
		p.GBps = *medianOf(rs, func(r Result) (float64, bool) { return r.ThroughputBytesPerS / 1e9, true })
		p.UsefulGBps = medianOf(rs, func(r Result) (float64, bool) { return ptrDiv(r.UsefulBytesPerS, 1e9) })
		p.WastedShare = medianOf(rs, func(r Result) (float64, bool) {
			if r.WastedBytes == nil || r.DeliveredBytes == nil || *r.DeliveredBytes == 0 {
				return 0, false
			}
			return float64(*r.WastedBytes) / float64(*r.DeliveredBytes), true
		})
		p.DataCPU = medianOf(rs, func(r Result) (float64, bool) { return ptrDiv(r.CPUNsPerUsefulGB, 1) })
		p.ConsumerCPU = medianOf(rs, func(r Result) (float64, bool) { return ptrDiv(r.ConsumerCPUNsPerUsefulGB, 1) })
		p.TotalCPU = medianOf(rs, func(r Result) (float64, bool) { return ptrDiv(r.TotalCPUNsPerUsefulGB, 1) })
		p.DeliveredGB = medianOf(rs, func(r Result) (float64, bool) { v, ok := derefOK(r.DeliveredBytes); return v / 1e9, ok })
		p.UsefulGB = medianOf(rs, func(r Result) (float64, bool) { v, ok := derefOK(r.UsefulBytes); return v / 1e9, ok })
		p.WastedGB = medianOf(rs, func(r Result) (float64, bool) { v, ok := derefOK(r.WastedBytes); return v / 1e9, ok })
		out = append(out, p)
	}
	return out
}

func ptrDiv(p *float64, d float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p / d, true
}

// Crossover finds the selectivity below which path a (filtering in the
// broker) costs less total CPU per useful GB than path b (whole batches,
// filtered by the consumer): where the lines cross on a log-log chart,
// interpolating log(a/b) linearly in log(selectivity) between the two
// measured selectivities where it changes sign (the lowest such pair). ok is false when
// the sign never changes; below says then whether a is cheaper at every
// measured selectivity.
func Crossover(points []SweepPoint, a, b string) (s float64, ok, below bool) {
	type pair struct{ s, d float64 }
	var ds []pair
	for _, pa := range points {
		if pa.Path != a || pa.TotalCPU == nil {
			continue
		}
		for _, pb := range points {
			if pb.Path == b && pb.Selectivity == pa.Selectivity && pb.TotalCPU != nil && *pa.TotalCPU > 0 && *pb.TotalCPU > 0 {
				ds = append(ds, pair{pa.Selectivity, math.Log(*pa.TotalCPU / *pb.TotalCPU)})
			}
		}
	}
	if len(ds) == 0 {
		return 0, false, false
	}
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j].s < ds[i].s {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
	for i := 0; i+1 < len(ds); i++ {
		lo, hi := ds[i], ds[i+1]
		if lo.d < 0 && hi.d >= 0 {
			f := lo.d / (lo.d - hi.d)
			return math.Exp(math.Log(lo.s) + f*(math.Log(hi.s)-math.Log(lo.s))), true, true
		}
	}
	return 0, false, ds[len(ds)-1].d < 0
}

// WriteSweep prints the sweep table and the mmap/sendfile crossover.
func WriteSweep(w io.Writer, points []SweepPoint, estimate bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	est := ""
	if estimate {
		est = "~"
	}
	fmt.Fprintln(tw, "selectivity\tpath\tfiltered by\truns\tlog GB/s\tuseful GB/s\twasted\tdata s/useful GB\tconsumer s/useful GB\ttotal s/useful GB\t")
	for _, p := range points {
		by := p.FilteredBy
		if by == "" {
			by = "-"
		}
		fmt.Fprintf(tw, "%g\t%s\t%s\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", p.Selectivity, p.Path, by, p.Runs, p.GBps,
			fmtPtr(p.UsefulGBps, "%.3f"), pct(p.WastedShare), est+fmtSecs(p.DataCPU), est+fmtSecs(p.ConsumerCPU), est+fmtSecs(p.TotalCPU))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s, ok, below := Crossover(points, "mmap", "sendfile")
	switch {
	case ok:
		_, err := fmt.Fprintf(w, "crossover: mmap filtering in the broker costs less total CPU per useful GB than sendfile plus the consumer's filter below selectivity %.3g\n", s)
		return err
	case below:
		_, err := fmt.Fprintln(w, "crossover: mmap filtering in the broker costs less total CPU per useful GB than sendfile plus the consumer's filter at every selectivity measured")
		return err
	}
	return nil
}

func pct(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", *p*100)
}

func fmtSecs(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *p/1e9)
}
