//go:build linux && amd64

package probes

import (
	"os"
	"strings"
	"testing"

	"github.com/copyscope/copyscope/metrics"
)

// TestTracepointsTable checks the exported list against what the design
// requires the probes to use.
func TestTracepointsTable(t *testing.T) {
	tps := Tracepoints()
	byName := map[string]Tracepoint{}
	var fed metrics.Field
	for _, tp := range tps {
		if tp.Group == "" || tp.Event == "" || (tp.Attach != "tracepoint" && tp.Attach != "tp_btf") {
			t.Errorf("tracepoint %+v: want group, event and attach tracepoint or tp_btf", tp)
		}
		byName[tp.Name()] = tp
		fed |= tp.Fields
	}
	for _, want := range []string{"raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "sched/sched_switch",
		"exceptions/page_fault_user", "filemap/mm_filemap_fault", "filemap/mm_filemap_map_pages",
		"filemap/mm_filemap_add_to_page_cache", "block/block_rq_complete"} {
		if _, ok := byName[want]; !ok {
			t.Errorf("Tracepoints() lacks %s", want)
		}
	}
	if exit := byName["raw_syscalls/sys_exit"]; !exit.Required || !exit.Fields.Has(metrics.FSyscalls) {
		t.Error("sys_exit must be required and count syscalls (the default counting mode)")
	}
	if byName["raw_syscalls/sys_enter"].Required {
		t.Error("sys_enter is attached only when counting at entry; it must not be required")
	}
	for _, btf := range []string{"raw_syscalls/sys_exit", "sched/sched_switch", "exceptions/page_fault_user", "filemap/mm_filemap_fault"} {
		if byName[btf].Attach != "tp_btf" {
			t.Errorf("%s attaches as %s, want tp_btf (as OpenEBPF does)", btf, byName[btf].Attach)
		}
	}
	if fed != metrics.FAll {
		t.Errorf("the tracepoints feed %b, want every eBPF field %b", fed, metrics.FAll)
	}
}

// TestDiagnose checks the report's shape, and as root on this kind of
// kernel that eBPF mode is found possible.
func TestDiagnose(t *testing.T) {
	rep := Diagnose()
	names := map[string]Check{}
	for _, c := range rep.Checks {
		names[c.Name] = c
		if c.Status != "ok" && c.Status != "warn" && c.Status != "fail" && c.Status != "info" {
			t.Errorf("check %+v: bad status", c)
		}
		if c.Status == "fail" && c.Fix == "" {
			t.Errorf("failed check %s has no fix", c.Name)
		}
	}
	for _, n := range []string{"kernel", "btf", "lockdown", "capabilities", "tracefs", "unprivileged_bpf_disabled", "perf_event_paranoid"} {
		if _, ok := names[n]; !ok {
			t.Errorf("report lacks the %s check", n)
		}
	}
	if len(rep.Tracepoints) != len(Tracepoints()) || len(rep.Metrics) != len(metricFields()) {
		t.Errorf("%d tracepoints and %d metrics reported, want %d and %d", len(rep.Tracepoints), len(rep.Metrics), len(Tracepoints()), len(metricFields()))
	}
	for _, m := range rep.Metrics {
		switch {
		case m.Status == "exact" && m.Source == "ebpf":
		case m.Status == "estimated" && strings.HasPrefix(m.Source, "proc") && m.Fix != "":
		case m.Status == "missing" && m.Fix != "":
		default:
			t.Errorf("metric %+v: want exact from ebpf, or estimated/missing with a fix", m)
		}
	}
	if rep.EBPFPossible != (rep.Why == "") || (rep.Mode == metrics.ModeEBPF) != rep.EBPFPossible {
		t.Errorf("ebpf_possible %v, mode %s, why %q disagree", rep.EBPFPossible, rep.Mode, rep.Why)
	}
	if os.Geteuid() != 0 {
		t.Skipf("not root: the report says %q; run as root to check that eBPF mode is found possible", rep.Why)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skipf("no kernel BTF (%v): eBPF mode is rightly impossible here", err)
	}
	if !rep.EBPFPossible {
		t.Fatalf("as root with BTF, eBPF mode found impossible: %s", rep.Why)
	}
	// The doctor's verdict must match what OpenEBPF actually does.
	p, err := OpenEBPF(EBPFOptions{})
	if err != nil {
		t.Fatalf("doctor says eBPF works but OpenEBPF fails: %v", err)
	}
	p.Close()
}

// TestULPCheck: kTLS is named possible only when tcp_available_ulp lists
// tls; this machine's "mptcp" alone says why the kTLS paths cannot run.
func TestULPCheck(t *testing.T) {
	for _, c := range []struct {
		ulps   string
		status Status
	}{{"mptcp", StatusInfo}, {"", StatusInfo}, {"espintcp mptcp tls", StatusOK}} {
		got := ulpCheck(c.ulps, nil)
		if got.Status != c.status || (c.status != StatusOK && got.Fix == "") {
			t.Errorf("tcp_available_ulp %q: %+v, want status %v (with a fix when not OK)", c.ulps, got, c.status)
		}
	}
	ulps, err := readULPs()
	t.Logf("this kernel: tcp_available_ulp %q (%v): %s", ulps, err, ulpCheck(ulps, err).Value)
}
