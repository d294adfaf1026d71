package bench

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/copyscope/copyscope/metrics"
)

// Summary is the median of one path and variant over its runs.
type Summary struct {
	Path, Variant string
	Chunk         int
	Runs          int
	// Medians; nil when not measured.
	GBps           float64  // throughput, GB = 1e9 bytes
	Ratio          *float64 // broker rows: median broker / median raw of the same path
	CPUNsPerGB     *float64 // data thread
	SyscallsPerMB  *float64 // data thread, MB = 1e6 bytes
	CtxVol         *float64 // data thread
	CtxInvol       *float64
	ConsumerCtxVol *float64
	ConsumerReads  float64
	Notes          []string

	Fetch int32 // broker rows: Fetch max_bytes (0 for raw rows)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianOf takes the median of the runs that measured a field, nil if none.
func medianOf(rs []Result, f func(Result) (float64, bool)) *float64 {
	var xs []float64
	for _, r := range rs {
		if v, ok := f(r); ok {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return nil
	}
	m := median(xs)
	return &m
}

// Summarize groups results by path and variant (in first-seen order) and
// takes medians.
func Summarize(results []Result) []Summary {
	type key struct {
		path, variant string
		chunk         int
		fetch         int32
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range results {
		k := key{r.Path, r.Variant, r.Chunk, r.FetchMaxBytes}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []Summary
	gbps := map[key]float64{}
	for _, k := range order {
		rs := groups[k]
		s := Summary{Path: k.path, Variant: k.variant, Chunk: rs[0].Chunk, Runs: len(rs), Fetch: k.fetch}
		s.GBps = *medianOf(rs, func(r Result) (float64, bool) { return r.ThroughputBytesPerS / 1e9, true })
		gbps[k] = s.GBps
		s.CPUNsPerGB = medianOf(rs, func(r Result) (float64, bool) {
			if r.CPUNsPerGB == nil {
				return 0, false
			}
			return *r.CPUNsPerGB, true
		})
		s.SyscallsPerMB = medianOf(rs, func(r Result) (float64, bool) { return r.SyscallsPerMB() })
		s.CtxVol = medianOf(rs, func(r Result) (float64, bool) { return derefOK(r.CtxSwitchesVol) })
		s.CtxInvol = medianOf(rs, func(r Result) (float64, bool) { return derefOK(r.CtxSwitchesInvol) })
		s.ConsumerCtxVol = medianOf(rs, func(r Result) (float64, bool) { return derefOK(r.ConsumerCtxVoluntary) })
		s.ConsumerReads = *medianOf(rs, func(r Result) (float64, bool) { return float64(r.ConsumerReads), true })
		seen := map[string]bool{}
		for _, r := range rs {
			for _, n := range r.Notes {
				if !seen[n] && !isRunSpecific(n) {
					seen[n] = true
					s.Notes = append(s.Notes, n)
				}
			}
		}
		if n := zerocopySummary(rs); n != "" {
			s.Notes = append(s.Notes, n)
		}
		out = append(out, s)
	}
	for i := range out {
		if out[i].Variant != "broker" {
			continue
		}
		if raw, ok := gbps[key{out[i].Path, "raw", out[i].Chunk, 0}]; ok && raw > 0 {
			r := out[i].GBps / raw
			out[i].Ratio = &r
		}
	}
	return out
}

func derefOK(p *uint64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return float64(*p), true
}

// isRunSpecific keeps per-run counts out of the summary's notes; the
// summary states the zerocopy totals itself.
func isRunSpecific(n string) bool {
	return strings.HasPrefix(n, "verified") || strings.HasPrefix(n, "zerocopy: the kernel copied")
}

// zerocopySummary totals what the kernel did with MSG_ZEROCOPY over runs.
func zerocopySummary(rs []Result) string {
	var zc, copied uint64
	for _, r := range rs {
		if r.ZerocopyBytes != nil && r.ZerocopyCopiedBytes != nil {
			zc += *r.ZerocopyBytes
			copied += *r.ZerocopyCopiedBytes
		}
	}
	if zc == 0 {
		return ""
	}
	how, flag := "MSG_ZEROCOPY", "SO_EE_CODE_ZEROCOPY_COPIED"
	if len(rs) > 0 && rs[0].Path == "uring-zc" {
		how, flag = "io_uring SEND_ZC", "IORING_NOTIF_USAGE_ZC_COPIED"
	}
	return fmt.Sprintf("%s: the kernel copied %d of %d bytes (%.1f%%, %s): not zero-copy here", how, copied, zc, 100*float64(copied)/float64(zc), flag)
}

func fmtPtr(p *float64, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}

// siPtr formats a median with metrics.SI, "-" when not measured.
func siPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return metrics.SI(*p)
}

// WriteTable prints the summary table; estimate marks /proc counters.
func WriteTable(w io.Writer, sums []Summary, estimate bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	mark := ""
	if estimate {
		mark = "~"
	}
	fmt.Fprintf(tw, "path\tvariant\tchunk\tfetch\truns\tGB/s (median)\tbroker/raw\tdata cpu_ns/GB\tsyscalls/MB\tctx vol\tctx invol\tconsumer ctx vol\tconsumer reads\t\n")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			s.Path, s.Variant, s.Chunk, fetchLabel(s.Fetch), s.Runs, s.GBps, fmtPtr(s.Ratio, "%.2f"),
			mark+siPtr(s.CPUNsPerGB), siPtr(s.SyscallsPerMB),
			mark+siPtr(s.CtxVol), mark+siPtr(s.CtxInvol), mark+siPtr(s.ConsumerCtxVol), metrics.SI(s.ConsumerReads))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, s := range sums {
		for _, n := range s.Notes {
			if !seen[n] {
				seen[n] = true
				fmt.Fprintf(w, "note (%s %s): %s\n", s.Path, s.Variant, n)
			}
		}
	}
	if estimate {
		fmt.Fprintln(w, "~ thread counters from /proc (estimates); raw rows' syscalls come from the path's own ledger (exact for its calls); broker rows' syscalls need the eBPF probes")
	}
	return nil
}

// csvHeader lists WriteCSV's columns.
var csvHeader = []string{"path", "variant", "run", "chunk", "seconds", "throughput_bytes_per_s", "delivered_bytes",
	"cpu_ns", "syscalls", "ctx_switches_voluntary", "ctx_switches_involuntary", "page_faults",
	"zerocopy_bytes", "zerocopy_copied_bytes", "consumer_cpu_ns", "consumer_ctx_switches_voluntary",
	"consumer_ctx_switches_involuntary", "consumer_reads", "fetches", "rcvlowat", "mode"}

// WriteCSV writes one row per result; unmeasured fields are empty.
func WriteCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	u := func(p *uint64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatUint(*p, 10)
	}
	for _, r := range results {
		row := []string{r.Path, r.Variant, strconv.Itoa(r.Run), strconv.Itoa(r.Chunk),
			strconv.FormatFloat(r.Seconds, 'g', 6, 64), strconv.FormatFloat(r.ThroughputBytesPerS, 'g', 6, 64),
			u(r.DeliveredBytes), u(r.CPUNs), u(r.Syscalls), u(r.CtxSwitchesVol), u(r.CtxSwitchesInvol), u(r.PageFaults),
			u(r.ZerocopyBytes), u(r.ZerocopyCopiedBytes), u(r.ConsumerCPUNs), u(r.ConsumerCtxVoluntary),
			u(r.ConsumerCtxInvoluntary), strconv.FormatUint(r.ConsumerReads, 10), strconv.FormatUint(r.Fetches, 10),
			strconv.Itoa(r.RcvLowat), string(r.Mode)}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// fetchLabel is a Fetch size in binary units, "-" for none (raw rows).
func fetchLabel(n int32) string {
	switch {
	case n <= 0:
		return "-"
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprint(n)
}
