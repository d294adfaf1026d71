package probes

import "time"

// Cost is what a probe costs and holds right now: the kernel programs'
// run counts and time (when the kernel collects them: sysctl
// kernel.bpf_stats_enabled=1), events it could not count, and its map
// occupancy. Exporters report it next to the counts it qualifies.
type Cost struct {
	Programs []ProgramCost
	// Dropped counts events not counted, by reason.
	Dropped map[string]uint64
	// Entries is the number of per-thread entries in each map.
	Entries map[string]int
}

// ProgramCost is one attached program's cumulative run statistics.
type ProgramCost struct {
	Name    string
	Runs    uint64
	RunTime time.Duration
	// Measured is false when the kernel does not collect run statistics
	// (kernel.bpf_stats_enabled=0): Runs and RunTime are then absent.
	Measured bool
}

// CostReporter is implemented by probes that can report their own cost
// (the eBPF backend).
type CostReporter interface {
	Cost() Cost
}
