package bench

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/copyscope/copyscope/metrics"
)

func TestSummarizeMediansAndRatio(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	mk := func(variant string, run int, gbps float64, cpu *uint64) Result {
		r := Result{Path: "sendfile", Variant: variant, Run: run, Chunk: 65536, ThroughputBytesPerS: gbps * 1e9}
		r.DeliveredBytes = u(1e9)
		r.CPUNs = cpu
		if variant == "raw" {
			r.Syscalls = u(15259)
		}
		return r
	}
	rs := []Result{
		mk("broker", 1, 2.0, u(3e8)), mk("raw", 1, 2.5, u(2e8)),
		mk("broker", 2, 1.0, u(1e8)), mk("raw", 2, 2.0, u(2e8)),
		mk("broker", 3, 3.0, nil), mk("raw", 3, 1.0, u(4e8)),
	}
	sums := Summarize(rs)
	if len(sums) != 2 || sums[0].Variant != "broker" || sums[1].Variant != "raw" {
		t.Fatalf("summaries %+v, want broker then raw", sums)
	}
	b, r := sums[0], sums[1]
	if b.GBps != 2.0 || r.GBps != 2.0 {
		t.Errorf("median GB/s broker %v raw %v, want 2 and 2", b.GBps, r.GBps)
	}
	if b.Ratio == nil || *b.Ratio != 1.0 || r.Ratio != nil {
		t.Errorf("ratio broker %v raw %v, want 1 and none", b.Ratio, r.Ratio)
	}
	// cpu_ns_per_gb is only set by FromDelta; here none is, so it is absent.
	if b.CPUNsPerGB != nil {
		t.Errorf("cpu/GB from records without cpu_ns_per_gb: %v, want absent", *b.CPUNsPerGB)
	}
	if b.SyscallsPerMB != nil || r.SyscallsPerMB == nil || *r.SyscallsPerMB != 15.259 {
		t.Errorf("syscalls/MB broker %v raw %v, want absent and 15.259", b.SyscallsPerMB, r.SyscallsPerMB)
	}
	var out bytes.Buffer
	if err := WriteTable(&out, sums, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1.00") || !strings.Contains(out.String(), "estimates") {
		t.Errorf("table lacks the ratio or the estimate legend:\n%s", out.String())
	}
}

func TestWriteCSVLeavesUnmeasuredEmpty(t *testing.T) {
	var r Result
	r.Path, r.Variant, r.Run, r.Mode = "read", "broker", 1, metrics.ModeProc
	var out bytes.Buffer
	if err := WriteCSV(&out, []Result{r}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("csv rows %v, %v", rows, err)
	}
	for i, h := range rows[0] {
		if h == "syscalls" || h == "cpu_ns" {
			if rows[1][i] != "" {
				t.Errorf("unmeasured %s written as %q, want empty", h, rows[1][i])
			}
		}
	}
}
