package promexport

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
)

// gather collects c into metric families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value finds the series of a family whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func snap(subs map[metrics.Subject]metrics.Counters) metrics.Snapshot {
	return metrics.Snapshot{Mode: metrics.ModeEBPF, Subjects: subs}
}

func proc(name string) metrics.Subject { return metrics.Subject{Kind: metrics.KindProcess, Name: name} }

func all(metrics.Subject) bool { return true }

func TestCollectorSeries(t *testing.T) {
	c := NewCollector(0, metrics.ModeEBPF, "process", "exact")
	cnt := metrics.Counters{Measured: metrics.FAll, DeliveredBytes: 100, ReceivedBytes: 50, CPUNs: 2e9, CtxVoluntary: 3, CtxInvoluntary: 4,
		SyscallsByName: map[string]uint64{"sendfile": 7}}
	cnt.CopiedToUser[metrics.ClassFile] = 11
	cnt.UringOps = metrics.UringOps{"SEND_ZC": {Submitted: 5, Completed: 4, Failed: 1, Bytes: 4096}}
	c.Update(snap(map[metrics.Subject]metrics.Counters{proc("nginx[42]"): cnt}), all)
	c.SetCost(probes.Cost{Dropped: map[string]uint64{"map_full": 0}, Entries: map[string]int{"sched_counts": 5}})
	fams := gather(t, c)
	who := map[string]string{"subject": "nginx[42]", "comm": "nginx", "pid": "42", "subject_kind": "process"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range who {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"copyscope_sent_bytes_total", who, 100},
		{"copyscope_received_bytes_total", who, 50},
		{"copyscope_cpu_seconds_total", who, 2},
		{"copyscope_context_switches_total", with("kind", "voluntary"), 3},
		{"copyscope_context_switches_total", with("kind", "involuntary"), 4},
		{"copyscope_syscalls_total", with("syscall", "sendfile"), 7},
		{"copyscope_cpu_copied_bytes_total", with("direction", "to_user", "fd_class", "file"), 11},
		{"copyscope_io_uring_operations_total", with("op", "SEND_ZC", "state", "failed"), 1},
		{"copyscope_io_uring_bytes_total", with("op", "SEND_ZC"), 4096},
		{"copyscope_probe_info", map[string]string{"mode": "ebpf", "estimate": "false", "grouping": "process"}, 1},
		{"copyscope_probe_map_entries", map[string]string{"map": "sched_counts"}, 5},
		{"copyscope_probe_dropped_events_total", map[string]string{"reason": "map_full"}, 0},
	} {
		if got, ok := value(fams, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "copyscope_") {
			t.Errorf("family %s outside the copyscope_ namespace", name)
		}
	}
}

// TestCollectorAbsent: a field the mode does not measure has no series.
func TestCollectorAbsent(t *testing.T) {
	c := NewCollector(0, metrics.ModeProc, "process", "exact")
	cnt := metrics.Counters{Measured: metrics.FSyscalls | metrics.FCPU, Syscalls: 9, CPUNs: 1e9}
	s := snap(map[metrics.Subject]metrics.Counters{proc("redis[7]"): cnt})
	s.Mode = metrics.ModeProc
	c.Update(s, all)
	fams := gather(t, c)
	for _, name := range []string{"copyscope_sent_bytes_total", "copyscope_cpu_copied_bytes_total", "copyscope_context_switches_total", "copyscope_page_faults_total"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exposed for a mode that does not measure it", name)
		}
	}
	if got, ok := value(fams, "copyscope_syscalls_total", map[string]string{"syscall": "all"}); !ok || got != 9 {
		t.Errorf("syscalls without names = %v (present %v), want 9 as syscall=\"all\"", got, ok)
	}
	if got, _ := value(fams, "copyscope_probe_info", map[string]string{"estimate": "true"}); got != 1 {
		t.Error("proc mode not labelled estimate=\"true\"")
	}
}

// TestCollectorLimitAndVanish: beyond the limit subjects fold into _other,
// whose counters never go backwards as members come and go; subjects not
// kept disappear.
func TestCollectorLimitAndVanish(t *testing.T) {
	c := NewCollector(2, metrics.ModeEBPF, "thread", "exact")
	th := func(name string) metrics.Subject { return metrics.Subject{Kind: metrics.KindThread, Name: name} }
	n := func(v uint64) metrics.Counters { return metrics.Counters{Measured: metrics.FAll, DeliveredBytes: v} }
	sent := func(name string) (float64, bool) {
		return value(gather(t, c), "copyscope_sent_bytes_total", map[string]string{"subject": name})
	}
	c.Update(snap(map[metrics.Subject]metrics.Counters{th("a:1"): n(1), th("b:2"): n(2), th("c:3"): n(3), th("d:4"): n(4)}), all)
	if v, _ := sent(OtherSubject); v != 7 || c.Folded() != 2 {
		t.Errorf("_other = %v with %d folded, want 3+4 from 2 subjects", v, c.Folded())
	}
	// c:3 exits (not kept); d:4 grows; a:1 vanishes and frees its place.
	keep := func(s metrics.Subject) bool { return s.Name != "c:3" }
	c.Update(snap(map[metrics.Subject]metrics.Counters{th("b:2"): n(2), th("c:3"): n(3), th("d:4"): n(10), th("e:5"): n(5)}), keep)
	if _, ok := sent("a:1"); ok {
		t.Error("a subject gone from the snapshot is still exposed")
	}
	if v, _ := sent(OtherSubject); v != 3+10 {
		t.Errorf("_other = %v after a member exited and another grew, want 13 (never backwards)", v)
	}
	if v, ok := sent("e:5"); !ok || v != 5 {
		t.Errorf("new subject e:5 = %v (present %v): it should take the freed place", v, ok)
	}
}

// TestDashboardQueriesExposedMetrics: every copyscope_ metric the Grafana
// dashboard queries is one the collector exposes (a rename breaks this).
func TestDashboardQueriesExposedMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	c := NewCollector(0, metrics.ModeEBPF, "process", "exact")
	full := metrics.Counters{Measured: metrics.FAll, SyscallsByName: map[string]uint64{"read": 1}}
	c.Update(snap(map[metrics.Subject]metrics.Counters{proc("x[1]"): full}), all)
	c.SetCost(probes.Cost{Programs: []probes.ProgramCost{{Name: "sys_exit", Measured: true}},
		Dropped: map[string]uint64{"map_full": 0}, Entries: map[string]int{"thread_stats": 0}})
	fams := gather(t, c)
	name := regexp.MustCompile(`copyscope_[a-z_]+`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				n++
				if fams[m] == nil {
					t.Errorf("panel %q queries %s, which the exporter does not expose", p.Title, m)
				}
			}
		}
	}
	if n == 0 {
		t.Error("the dashboard queries no copyscope_ metric")
	}
}
