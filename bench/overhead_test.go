package bench

import (
	"math"
	"slices"
	"testing"

	"github.com/copyscope/copyscope/metrics"
)

func TestProbeOrderAlternates(t *testing.T) {
	cfg := Config{}
	if got := probeOrder(cfg, 1); !slices.Equal(got, []bool{false}) {
		t.Errorf("without Overhead: %v, want one unprobed measurement", got)
	}
	cfg.Overhead = func() (ThreadCounters, func() error, error) { return nil, nil, nil }
	if a, b := probeOrder(cfg, 1), probeOrder(cfg, 2); !slices.Equal(a, []bool{true, false}) || !slices.Equal(b, []bool{false, true}) {
		t.Errorf("runs 1 and 2: %v %v, want probed first on odd runs, unprobed first on even", a, b)
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
		rec("sendfile", "unprobed", 3, 50),                          // no probed run: no row
		{Path: "mmap", Variant: "broker", ThroughputBytesPerS: 1e9}, // not an overhead run
	}
	rows := SummarizeOverhead(results)
	if len(rows) != 1 {
		t.Fatalf("rows %+v, want one (read broker)", rows)
	}
	r := rows[0]
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if r.Path != "read" || r.Runs != 3 || !near(r.GBpsProbed, 1.9) || !near(r.GBpsUnprobed, 2.1) ||
		!near(r.ThroughputRatio, 1.9/2.1) || !near(r.CPUProbed, 110) || !near(r.CPUUnprobed, 95) ||
		!near(r.CPURatio, 110.0/95) || !near(r.ConsumerCPURatio, 220.0/190) {
		t.Errorf("row %+v", r)
	}
}
