//go:build !(linux && amd64)

package probes

import (
	"runtime"

	"github.com/copyscope/copyscope/metrics"
)

// Tracepoint is one kernel event the eBPF backend attaches a program to.
type Tracepoint struct {
	Program, Attach, Group, Event string
	Required                      bool
	Fields                        metrics.Field
	Lost                          string
}

// Name is "group/event".
func (t Tracepoint) Name() string { return t.Group + "/" + t.Event }

// Tracepoints is empty: the eBPF backend is built for linux/amd64 only.
func Tracepoints() []Tracepoint { return nil }

// Check is one line of the doctor's report.
type Check struct {
	Name, Status, Value, Fix string
}

// TracepointCheck says whether one tracepoint exists and can carry a program.
type TracepointCheck struct {
	Tracepoint
	Feeds               []string
	Exists, Status, Fix string
}

// MetricStatus says how one metric will be measured.
type MetricStatus struct {
	Metric, Status, Source, Fix string
}

// Report is what this kernel and these privileges allow.
type Report struct {
	Kernel       string
	Checks       []Check
	Tracepoints  []TracepointCheck
	Metrics      []MetricStatus
	EBPFPossible bool
	Mode         metrics.Mode
	Why          string
}

// Diagnose reports that eBPF mode is built for linux/amd64 only.
func Diagnose() Report {
	return Report{Mode: metrics.ModeProc, Kernel: runtime.GOOS + "/" + runtime.GOARCH,
		Why: "eBPF probes are built for linux/amd64 only; /proc estimates need Linux"}
}
