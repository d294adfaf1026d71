package bench

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestSelectivitySweep: on read and mmap the broker filters, so the record
// bytes delivered follow the selectivity (within 5% of the useful bytes:
// the rest are empty batches standing for runs without a match); on the
// by-reference paths every byte arrives and wasted is the difference. The
// useful share is checked against the workload's own arithmetic: s of the
// records, all of one size.
func TestSelectivitySweep(t *testing.T) {
	var progress bytes.Buffer
	cfg := Config{Size: 8 << 20, Runs: 1, Selectivity: []float64{1, 0.1, 0.01}, DataDir: t.TempDir(), Progress: &progress,
		Paths: []string{"read", "mmap", "sendfile", "splice", "zerocopy"}, FetchMaxBytes: 1 << 20}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	var logBytes uint64
	for _, r := range res {
		if r.Variant == "raw" && r.DeliveredBytes != nil {
			logBytes = *r.DeliveredBytes
		}
	}
	if logBytes == 0 {
		t.Fatalf("no raw record at selectivity 1:\n%s", progress.String())
	}
	for _, r := range res {
		if r.Variant != "broker" {
			continue
		}
		if r.Selectivity == nil || r.UsefulBytes == nil || r.WastedBytes == nil || r.DeliveredBytes == nil {
			t.Fatalf("%s: sweep fields missing: %+v", r.Path, r)
		}
		s, useful, wasted, delivered := *r.Selectivity, float64(*r.UsefulBytes), *r.WastedBytes, *r.DeliveredBytes
		if got := useful / float64(logBytes); math.Abs(got-s) > 0.02*s+0.002 {
			t.Errorf("%s at %g: useful share %.4f of the log", r.Path, s, got)
		}
		viewer := r.Path == "read" || r.Path == "mmap"
		switch {
		case s == 1:
			if delivered != logBytes || wasted != 0 {
				t.Errorf("%s at 1: delivered %d of %d, wasted %d", r.Path, delivered, logBytes, wasted)
			}
		case viewer:
			if r.FilteredBy != "broker" || math.Abs(float64(delivered)-useful) > 0.05*useful {
				t.Errorf("%s at %g: filtered by %q, delivered %d, useful %.0f: want broker, within 5%%", r.Path, s, r.FilteredBy, delivered, useful)
			}
		default:
			if r.FilteredBy != "consumer" || delivered != logBytes || float64(wasted) != float64(delivered)-useful {
				t.Errorf("%s at %g: filtered by %q, delivered %d of %d, wasted %d, useful %.0f", r.Path, s, r.FilteredBy, delivered, logBytes, wasted, useful)
			}
		}
	}
	var out bytes.Buffer
	if err := WriteSweep(&out, SummarizeSweep(res), false); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
}

func TestCrossover(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	pts := []SweepPoint{
		{Path: "mmap", Selectivity: 1, TotalCPU: f(6)}, {Path: "sendfile", Selectivity: 1, TotalCPU: f(4)},
		{Path: "mmap", Selectivity: 0.1, TotalCPU: f(50)}, {Path: "sendfile", Selectivity: 0.1, TotalCPU: f(60)},
		{Path: "mmap", Selectivity: 0.01, TotalCPU: f(200)}, {Path: "sendfile", Selectivity: 0.01, TotalCPU: f(600)},
	}
	s, ok, _ := Crossover(pts, "mmap", "sendfile")
	// log(a/b): ln(5/6) at 0.1, ln(3/2) at 1; linear in log10(s).
	lo, hi := math.Log(50.0/60), math.Log(6.0/4)
	if want := math.Pow(10, -1+lo/(lo-hi)); !ok || math.Abs(s-want) > 1e-9 {
		t.Errorf("crossover %v (%v), want %v", s, ok, want)
	}
	if _, ok, below := Crossover(pts[2:], "mmap", "sendfile"); ok || !below {
		t.Errorf("mmap cheaper everywhere: ok %v below %v", ok, below)
	}
}

// TestCharts draws both charts from hand-made medians and decodes the
// PNGs.
func TestCharts(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	pts := []SweepPoint{
		{Path: "mmap", Selectivity: 1, TotalCPU: f(6e8)}, {Path: "sendfile", Selectivity: 1, TotalCPU: f(4e8)},
		{Path: "mmap", Selectivity: 0.1, TotalCPU: f(50e8)}, {Path: "sendfile", Selectivity: 0.1, TotalCPU: f(60e8)},
	}
	sums := []Summary{
		{Path: "read", Variant: "broker", Chunk: 4096, GBps: 1, CPUNsPerGB: f(5e8)},
		{Path: "read", Variant: "broker", Chunk: 65536, GBps: 2, CPUNsPerGB: f(3e8)},
	}
	dir := t.TempDir()
	for name, draw := range map[string]func(string) error{
		"sweep.png":  func(p string) error { return SweepChart(p, pts) },
		"chunks.png": func(p string) error { return ChunkChart(p, sums) },
	} {
		p := filepath.Join(dir, name)
		if err := draw(p); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil || img.Bounds().Dx() < 500 {
			t.Errorf("%s: not a chart-sized PNG: %v", name, err)
		}
	}
	if err := SweepChart(filepath.Join(dir, "none.png"), nil); err == nil {
		t.Error("a chart of nothing drew without an error")
	}
}

// TestDeadLetters: a reference costs the producer a few dozen bytes on
// the socket, a re-produced record its whole value; both are accepted
// by the broker (the producer fails on any error code) on every path.
func TestDeadLetters(t *testing.T) {
	var progress bytes.Buffer
	paths := []string{"read", "mmap", "sendfile"}
	rs, err := DeadLetters(context.Background(), Config{Size: 4 << 20, Paths: paths, Progress: &progress}, 300)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rs) != 2*len(paths) {
		t.Fatalf("%d results, want %d", len(rs), 2*len(paths))
	}
	for _, r := range rs {
		switch r.Way {
		case "reference":
			if r.BytesSentPerRecord > 100 {
				t.Errorf("%s: a reference took %.0f bytes on the socket", r.Path, r.BytesSentPerRecord)
			}
		case "reproduce":
			if r.BytesSentPerRecord < DefaultRecordSize {
				t.Errorf("%s: a re-produced %d-byte record took %.0f bytes", r.Path, DefaultRecordSize, r.BytesSentPerRecord)
			}
		}
		if r.CPUNsPerRecord == nil || r.ProducerCPUNsPerRec == nil {
			t.Errorf("%s %s: CPU not measured", r.Path, r.Way)
		}
	}
	var out bytes.Buffer
	if err := WriteDeadLetters(&out, rs); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
}

// TestSelectivityPerBatch: with one tag per batch the tag index lets read
// and mmap skip whole batches; the useful bytes are still the workload's
// arithmetic and the by-reference paths still waste the rest.
func TestSelectivityPerBatch(t *testing.T) {
	var progress bytes.Buffer
	cfg := Config{Size: 8 << 20, Runs: 2, Selectivity: []float64{1, 0.1}, TagPerBatch: true, Progress: &progress,
		Paths: []string{"mmap", "sendfile"}, FetchMaxBytes: 1 << 20}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	for _, r := range res {
		if r.Variant != "broker" || *r.Selectivity == 1 {
			continue
		}
		useful, delivered := float64(*r.UsefulBytes), float64(*r.DeliveredBytes)
		if r.Path == "mmap" && delivered > 1.05*useful {
			t.Errorf("mmap at 0.1, one tag per batch: delivered %.0f for %.0f useful", delivered, useful)
		}
		if r.Path == "sendfile" && *r.WastedBytes == 0 {
			t.Errorf("sendfile at 0.1 wasted nothing")
		}
	}
}
