package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/copyscope/copyscope/bench"
	"github.com/copyscope/copyscope/demo"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/metrics/promexport"
	"github.com/copyscope/copyscope/probes"
)

// promFlags are the exporter options shared by watch and demo.
type promFlags struct {
	addr        string
	maxSubjects int
}

func (f *promFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.addr, "prometheus", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; a bare :PORT binds to loopback)")
	fl.IntVar(&f.maxSubjects, "prometheus-max-subjects", promexport.DefaultMaxSubjects,
		"subjects with series of their own; later ones are summed into subject=\"_other\" (bounds cardinality, e.g. for --by thread)")
}

// exporter feeds one Collector from the sampler and serves it; a nil
// exporter (no --prometheus) does nothing.
type exporter struct {
	col   *promexport.Collector
	srv   *promexport.Server
	probe probes.Probe
}

// startExporter serves the collector when --prometheus is set.
func startExporter(f promFlags, p probes.Probe, grouping string, duty int, say func(string, ...any)) (*exporter, error) {
	if f.addr == "" {
		return nil, nil
	}
	cost := "exact"
	if p.Mode() == metrics.ModeEBPFLow {
		cost = "low"
		if duty > 1 {
			cost = fmt.Sprintf("low/%d", duty) // sampled: attached 1/duty of the time
		}
	}
	col := promexport.NewCollector(f.maxSubjects, p.Mode(), grouping, cost)
	srv, err := promexport.Listen(f.addr, col)
	if err != nil {
		return nil, err
	}
	say("copyscope: Prometheus metrics at http://%s/metrics\n", srv.Addr())
	return &exporter{col: col, srv: srv, probe: p}, nil
}

// update exposes a snapshot's subjects that are shown this interval.
func (e *exporter) update(cur metrics.Snapshot, shown []metrics.Record) {
	if e == nil {
		return
	}
	keep := make(map[metrics.Subject]bool, len(shown))
	for _, r := range shown {
		keep[metrics.Subject{Kind: r.Kind, Name: r.Subject}] = true
	}
	e.col.Update(cur, func(s metrics.Subject) bool { return keep[s] })
	if cr, ok := e.probe.(probes.CostReporter); ok && e.probe != nil {
		e.col.SetCost(cr.Cost())
	}
}

// demoExporter serves the demo's subjects (every path, always) when
// --prometheus is set, fed through cfg.OnSnapshot.
func demoExporter(cmd *cobra.Command, cfg *demo.Config, f promFlags) (*exporter, error) {
	if f.addr == "" {
		return nil, nil
	}
	col := promexport.NewCollector(f.maxSubjects, metrics.Mode(cfg.Probe), "path", "exact")
	srv, err := promexport.Listen(f.addr, col)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "copyscope: Prometheus metrics at http://%s/metrics\n", srv.Addr())
	cfg.OnSnapshot = func(s metrics.Snapshot) { col.Update(s, func(metrics.Subject) bool { return true }) }
	return &exporter{col: col, srv: srv}, nil
}

func (e *exporter) close() error {
	if e == nil {
		return nil
	}
	if err := e.srv.Close(); err != nil {
		return fmt.Errorf("stop Prometheus exporter: %w", err)
	}
	return nil
}

// costHelp documents --cost.
const costHelp = `probe cost: exact (syscall tracepoints: every count exact; every thread of the machine pays the kernel's syscall-tracepoint price) ` +
	`or low (socket and page-cache tracepoints only, for production: transfer style and copies per byte, some estimates, no syscall counts or faults)`

// costOptions turns --cost, --duty and --duty-period into probe options.
func costOptions(cost, mode string, duty int, period time.Duration) (probes.EBPFOptions, error) {
	if duty != 1 && cost != "low" {
		return probes.EBPFOptions{}, fmt.Errorf("--duty %d samples the low-cost mode: add --cost low", duty)
	}
	if duty < 1 || duty > probes.MaxDuty {
		return probes.EBPFOptions{}, fmt.Errorf("--duty %d: use 1 (always attached) to %d", duty, probes.MaxDuty)
	}
	if min := 10 * time.Millisecond * time.Duration(duty); period < min {
		return probes.EBPFOptions{}, fmt.Errorf("--duty-period %v: at --duty %d use at least %v (10 ms per window)", period, duty, min)
	}
	switch cost {
	case "exact", "":
		return probes.EBPFOptions{}, nil
	case "low":
		if mode == "proc" {
			return probes.EBPFOptions{}, fmt.Errorf("--cost low is an eBPF mode: drop --mode proc")
		}
		return probes.EBPFOptions{LowCost: true, Duty: duty, DutyPeriod: period}, nil
	}
	return probes.EBPFOptions{}, fmt.Errorf("unknown --cost %q (use exact or low)", cost)
}

// lowCostAttachment measures bench --overhead runs with the low-cost
// probes attached (records labelled "low", or "low/N" sampled 1/N).
func lowCostAttachment(duty int) bench.Attachment {
	name := "low"
	if duty > 1 {
		name = fmt.Sprintf("low/%d", duty)
	}
	return bench.Attachment{Name: name, Open: func() (bench.ThreadCounters, func() error, error) {
		p, err := probes.OpenEBPF(probes.EBPFOptions{LowCost: true, Duty: duty})
		if err != nil {
			return nil, nil, err
		}
		return bench.ProbeCounters(p), p.Close, nil
	}}
}
