//go:build !(linux && amd64)

package probes

import (
	"runtime"

	"github.com/copyscope/copyscope/metrics"
)

// Tracepoints is empty: the eBPF backend is built for linux/amd64 only.
func Tracepoints() []Tracepoint { return nil }

// Diagnose reports that eBPF mode is built for linux/amd64 only.
func Diagnose() Report {
	return Report{Mode: metrics.ModeProc, Kernel: runtime.GOOS + "/" + runtime.GOARCH,
		Why: "eBPF probes are built for linux/amd64 only; /proc estimates need Linux"}
}
