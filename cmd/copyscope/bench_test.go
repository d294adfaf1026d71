package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchCommandJSONAndCSV runs `copyscope bench` in process on a small
// log: one JSON record per path, variant and run with the docs/design.md keys,
// and a CSV with a row per record.
func TestBenchCommandJSONAndCSV(t *testing.T) {
	csvPath := filepath.Join(t.TempDir(), "bench.csv")
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs([]string{"bench", "--size", "4MiB", "--runs", "2", "--paths", "read,zerocopy", "--mode", "proc",
		"--verify", "--json", "--csv", csvPath, "--data", t.TempDir()})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("bench: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2*2*2 {
		t.Fatalf("%d JSON lines, want 8 (2 paths x 2 variants x 2 runs):\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q: %v", l, err)
		}
		for _, k := range []string{"path", "variant", "run", "chunk", "seconds", "throughput_bytes_per_s", "delivered_bytes", "cpu_ns", "mode"} {
			if _, ok := m[k]; !ok {
				t.Errorf("record lacks %q: %s", k, l)
			}
		}
		if m["variant"] == "raw" && m["path"] == "zerocopy" && m["zerocopy_copied_bytes"] != m["zerocopy_bytes"] {
			t.Errorf("raw zerocopy on loopback: copied %v of %v, want all", m["zerocopy_copied_bytes"], m["zerocopy_bytes"])
		}
	}
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 1+8 {
		t.Fatalf("csv: %d rows (%v), want header + 8", len(rows), err)
	}
}

func TestBenchCommandRejects(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--paths", "carrier-pigeon", "--size", "1MiB"},
		{"bench", "--size", "lots"},
		{"bench", "--chunk", "0", "--size", "1MiB"},
		{"bench", "--no-cork", "--size", "1MiB"},
		{"bench", "--mode", "magic", "--size", "1MiB"},
	} {
		cmd := newRootCmd()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestBenchCommandOverhead runs `copyscope bench --overhead` (root): every
// run is measured probed and unprobed, probed records carry the eBPF
// probes' exact syscall counts, unprobed ones /proc's, and the table of
// ratios follows the usual one. Without root it must refuse before work.
func TestBenchCommandOverhead(t *testing.T) {
	args := []string{"bench", "--size", "8MiB", "--runs", "2", "--paths", "read", "--overhead", "--data", t.TempDir()}
	run := func(extra ...string) (string, error) {
		cmd := newRootCmd()
		var out, errb bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		cmd.SetArgs(append(append([]string{}, args...), extra...))
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run("--mode", "proc"); err == nil || !strings.Contains(err.Error(), "--overhead") {
		t.Errorf("--overhead --mode proc: %v, want an error naming --overhead", err)
	}
	cmd := newRootCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"bench", "--size", "1MiB", "--floor"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--overhead") {
		t.Errorf("--floor without --overhead: %v, want an error naming --overhead", err)
	}
	if os.Geteuid() != 0 {
		if _, err := run(); err == nil || !strings.Contains(err.Error(), "eBPF") {
			t.Errorf("--overhead without root: %v, want an error saying it needs the eBPF probes", err)
		}
		t.Skip("bench --overhead attaches the eBPF probes: run as root for the full check")
	}
	out, err := run("--json")
	if err != nil {
		t.Fatalf("bench --overhead --json: %v", err)
	}
	count := overheadLabels(t, out)
	// read x (broker, raw) x 2 runs, each probed and unprobed.
	if count["probed"] != 4 || count["unprobed"] != 4 || len(count) != 2 {
		t.Errorf("records by overhead label %v, want 4 probed and 4 unprobed", count)
	}
	table, err := run()
	if err != nil {
		t.Fatalf("bench --overhead: %v", err)
	}
	if !strings.Contains(table, "overhead: each attachment") || !strings.Contains(table, "cpu/GB ratio") {
		t.Errorf("no overhead table:\n%s", table)
	}
	// --floor: a third measurement per run with only the empty sys_exit
	// program attached, its counters from /proc.
	out, err = run("--floor", "--json")
	if err != nil {
		t.Fatalf("bench --overhead --floor --json: %v", err)
	}
	count = overheadLabels(t, out)
	if count["probed"] != 4 || count["unprobed"] != 4 || count["floor"] != 4 || count["low"] != 4 || count["low/10"] != 4 || count["low-floor"] != 4 {
		t.Errorf("--floor records by label %v, want 4 each of probed, unprobed, floor, low, low/10, low-floor", count)
	}
}

// overheadLabels counts bench --overhead JSON records by their overhead
// label and checks each label's counters: probed records carry the eBPF
// probes' syscall counts, unprobed and floor records /proc's.
func overheadLabels(t *testing.T, out string) map[string]int {
	t.Helper()
	count := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q: %v", l, err)
		}
		label, _ := m["overhead"].(string)
		count[label]++
		_, hasSyscalls := m["syscalls"]
		switch {
		case label == "probed" && (m["mode"] != "ebpf" || !hasSyscalls):
			t.Errorf("probed record without eBPF counts: %s", l)
		case (label == "unprobed" || label == "floor" || label == "low-floor") && m["mode"] != "proc":
			t.Errorf("%s record not from /proc: %s", label, l)
		}
	}
	return count
}
