package bench

import (
	"math"
	"slices"
	"testing"

	"github.com/copyscope/copyscope/metrics"
)

func TestProbeOrderAlternates(t *testing.T) {
	names := func(atts []*Attachment) []string {
		var out []string
		for _, a := range atts {
			if a == nil {
				out = append(out, "unprobed")
			} else {
				out = append(out, a.Name)
			}
		}
		return out
	}
	cfg := Config{}
	if got := names(probeOrder(cfg, 1)); !slices.Equal(got, []string{"unprobed"}) {
		t.Errorf("without Overhead: %v, want one measurement with the configured counters", got)
	}
	cfg.Overhead = []Attachment{{Name: "probed"}, {Name: "floor"}}
	want := [][]string{{"unprobed", "probed", "floor"}, {"probed", "floor", "unprobed"}, {"floor", "unprobed", "probed"}, {"unprobed", "probed", "floor"}}
	for run := 1; run <= 4; run++ {
		if got := names(probeOrder(cfg, run)); !slices.Equal(got, want[run-1]) {
			t.Errorf("run %d: %v, want %v", run, got, want[run-1])
		}
	}
}

func TestSummarizeOverhead(t *testing.T) {
	rec := func(path, label string, gbps, cpuPerGB float64) Result {
		d := uint64(1e9)
		c := cpuPerGB
		cons := uint64(2 * cpuPerGB)
		return Result{Path: path, Variant: "broker", Chunk: 4096, Overhead: label, ThroughputBytesPerS: gbps * 1e9,
			Record: metrics.Record{DeliveredBytes: &d, CPUNsPerGB: &c}, ConsumerCPUNs: &cons}
	}
	results := []Result{
		rec("read", "probed", 1.8, 110), rec("read", "unprobed", 2.0, 100),
		rec("read", "unprobed", 2.2, 90), rec("read", "probed", 1.9, 100),
		rec("read", "probed", 9.9, 999), rec("read", "unprobed", 2.1, 95), // an outlier: medians ignore it
		rec("read", "floor", 2.0, 105), rec("read", "floor", 2.1, 104), rec("read", "floor", 1.9, 106),
		rec("sendfile", "unprobed", 3, 50),                          // no probed run: no row
		{Path: "mmap", Variant: "broker", ThroughputBytesPerS: 1e9}, // not an overhead run
	}
	rows := SummarizeOverhead(results)
	if len(rows) != 2 || rows[0].Attached != "probed" || rows[1].Attached != "floor" {
		t.Fatalf("rows %+v, want read broker probed, then floor", rows)
	}
	if f := rows[1]; f.Runs != 3 || f.ThroughputRatio != 2.0/2.1 || f.CPURatio != 105.0/95 {
		t.Errorf("floor row %+v", f)
	}
	r := rows[0]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if r.Path != "read" || r.Runs != 3 || !near(r.GBpsProbed, 1.9) || !near(r.GBpsUnprobed, 2.1) ||
		!near(r.ThroughputRatio, 1.9/2.1) || !near(r.CPUProbed, 110) || !near(r.CPUUnprobed, 95) ||
		!near(r.CPURatio, 110.0/95) || !near(r.ConsumerCPURatio, 220.0/190) {
		t.Errorf("row %+v", r)
	}
}
