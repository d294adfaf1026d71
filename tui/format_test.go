package tui

import (
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		// The numbers themselves are metrics.SI's (metrics/format_test.go).
		{chunkStr(4096), "4K"}, {chunkStr(1 << 20), "1M"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestBar(t *testing.T) {
	if got := bar(1, 2, 8); got != "████····" {
		t.Errorf("half bar = %q", got)
	}
	if got := bar(5, 2, 4); got != "████" {
		t.Errorf("overfull bar = %q", got)
	}
	if got := bar(0, 2, 4); got != "····" {
		t.Errorf("empty bar = %q", got)
	}
}

func TestRingAndSparkline(t *testing.T) {
	r := newRing(4)
	for _, v := range []float64{1, 2, 3, 4, 5, 6} {
		r.push(v)
	}
	if got := r.last(10); len(got) != 4 || got[0] != 3 || got[3] != 6 {
		t.Fatalf("ring kept %v, want [3 4 5 6]", got)
	}
	avg, mx := r.avgMax(4)
	if avg != 4.5 || mx != 6 {
		t.Errorf("avg|max = %v|%v, want 4.5|6", avg, mx)
	}
	if got := sparkline([]float64{0, 4, 8}, 5, 8); got != "   ▄█" && got != "   ▅█" {
		t.Errorf("sparkline = %q", got)
	}
	rows := sparkRows([]float64{8, 4}, 2, 2, 8)
	if len(rows) != 2 || rows[0] != "█ " || rows[1] != "██" {
		t.Errorf("sparkRows = %q", rows)
	}
	if w := len([]rune(strings.Join(rows, ""))); w != 4 {
		t.Errorf("sparkRows cells = %d", w)
	}
}

func TestBestOf(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	active := cell{}
	active.rec.DeliveredBytes = u(1)
	idle := cell{}
	cells := []cell{active, active, active, idle}
	got := bestOf(-1, []float64{2, 0, 0, -1}, []bool{true, true, true, true}, cells)
	if got[0] || !got[1] || !got[2] || got[3] {
		t.Errorf("lower-is-better marks = %v, want [false true true false] (idle subjects never win)", got)
	}
	if got := bestOf(+1, []float64{1, 1, 1, 0}, []bool{true, true, true, true}, cells); got[0] || got[1] || got[2] {
		t.Errorf("all-equal row marked %v, want none", got)
	}
}

func TestPlainLines(t *testing.T) {
	demo := loadSamples(t, "testdata/demo_samples.jsonl")
	lines := PlainLines(demo[len(demo)-1])
	if len(lines) != len(demo[len(demo)-1].Records)+1 {
		t.Fatalf("%d lines for %d records (+1 broker line)", len(lines), len(demo[len(demo)-1].Records))
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.Contains(l, "MB/s") || !strings.Contains(l, "copies/B") || !strings.Contains(l, "consumer-ctx") {
			t.Errorf("line lacks throughput, copies or consumer switches: %q", l)
		}
	}
	if !strings.Contains(strings.Join(lines, "\n"), "WARNING: kernel copied") {
		t.Errorf("no MSG_ZEROCOPY warning in\n%s", strings.Join(lines, "\n"))
	}
	watch := loadSamples(t, "testdata/watch_proc.jsonl")
	for _, l := range PlainLines(watch[0]) {
		if !strings.Contains(l, "proc") || !strings.Contains(l, "~") {
			t.Errorf("proc line not marked as an estimate: %q", l)
		}
	}
}
