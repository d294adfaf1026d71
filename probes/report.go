package probes

import "github.com/copyscope/copyscope/metrics"

// The doctor's report, on every platform (Diagnose fills it where the
// eBPF backend is built, doctor_other.go says why not elsewhere).

// Tracepoint is one kernel event the eBPF backend attaches a program to.
type Tracepoint struct {
	Program  string        `json:"program"`  // BPF program name
	Attach   string        `json:"attach"`   // "tracepoint" or "tp_btf"
	Group    string        `json:"group"`    // tracefs events/<group>/<event>
	Event    string        `json:"event"`    // event (for tp_btf, the BTF raw tracepoint name)
	Required bool          `json:"required"` // eBPF mode is impossible without it
	Fields   metrics.Field `json:"-"`        // metrics it feeds
	Lost     string        `json:"lost,omitempty"`
}

// Name is "group/event", as under tracefs events/.
func (t Tracepoint) Name() string { return t.Group + "/" + t.Event }

// Status is how a check came out.
type Status string

// The statuses of a check; JSON carries their strings.
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn" // works, but something is lost
	StatusFail Status = "fail" // eBPF mode (or what the check is for) is impossible
	StatusInfo Status = "info" // for the reader; decides nothing
)

// Quality is how a metric will be measured.
type Quality string

// The qualities of a metric; JSON carries their strings.
const (
	QualityExact     Quality = "exact"     // counted by the eBPF probes
	QualityEstimated Quality = "estimated" // sampled from /proc
	QualityMissing   Quality = "missing"   // needs eBPF, which is not possible here
)

// Check is one line of the doctor's report.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Value  string `json:"value"`
	Fix    string `json:"fix,omitempty"`
}

// TracepointCheck says whether one tracepoint exists and can carry a program.
type TracepointCheck struct {
	Tracepoint
	Feeds  []string `json:"feeds"`
	Exists string   `json:"exists"` // yes, no, or unknown (why)
	Status Status   `json:"status"` // ok, fail (required) or warn (optional)
	Fix    string   `json:"fix,omitempty"`
}

// MetricStatus says how one metric will be measured.
type MetricStatus struct {
	Metric string  `json:"metric"`
	Status Quality `json:"status"`
	Source string  `json:"source"`
	Fix    string  `json:"fix,omitempty"`
}

// Report is what this kernel and these privileges allow.
type Report struct {
	Kernel       string            `json:"kernel"`
	Checks       []Check           `json:"checks"`
	Tracepoints  []TracepointCheck `json:"tracepoints"`
	Metrics      []MetricStatus    `json:"metrics"`
	EBPFPossible bool              `json:"ebpf_possible"`
	Mode         metrics.Mode      `json:"mode"` // what watch --mode auto would use
	Why          string            `json:"why,omitempty"`
}
