//go:build linux && amd64

package probes

import (
	"sort"

	"github.com/cilium/ebpf"

	"github.com/copyscope/copyscope/internal/procfs"
)

// dropNames names the drops array's indexes (enum drop_reason in
// bpf/headers/common.h) for exporters.
var dropNames = map[syscallsDropReason]string{
	syscallsDropReasonDROP_MAP_FULL: "map_full",
	syscallsDropReasonDROP_READ:     "read_failed",
	syscallsDropReasonDROP_MMSG:     "mmsg_truncated",
	syscallsDropReasonDROP_TID:      "tid_above_pid_max",
	syscallsDropReasonDROP_REUSED:   "tid_reused",
}

// Cost reports the programs' run statistics, the drops and the occupancy
// of the per-thread maps.
func (p *ebpfProbe) Cost() Cost {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Cost{Dropped: map[string]uint64{}, Entries: map[string]int{}}
	if p.closed {
		return c
	}
	statsOn := bpfStatsEnabled()
	for _, coll := range p.colls {
		for name, prog := range coll.Programs {
			pc := ProgramCost{Name: name}
			if st, err := prog.Stats(); err == nil && statsOn {
				pc.Runs, pc.RunTime, pc.Measured = st.RunCount, st.Runtime, true
			}
			c.Programs = append(c.Programs, pc)
		}
	}
	sort.Slice(c.Programs, func(i, j int) bool { return c.Programs[i].Name < c.Programs[j].Name })
	for i, why := range dropNames {
		var v []uint64
		if p.drops != nil && p.drops.Lookup(i, &v) == nil {
			c.Dropped[why] = sum(v)
		}
	}
	used := 0
	for i := 0; i < p.slots.n; i++ {
		if st, _, err := p.slots.header(i); err == nil && st != slotFree {
			used++
		}
	}
	c.Entries["thread_stats"] = used
	for name, m := range map[string]*ebpf.Map{"sched_counts": p.schedCounts, "fault_counts": p.faultCounts, "uring_counts": p.uringCounts} {
		if m != nil {
			c.Entries[name] = countKeys(m)
		}
	}
	c.Entries["exited_threads"] = len(p.exited)
	c.Entries["released_processes"] = len(p.goneProcs)
	return c
}

// countKeys counts a hash map's keys (bounded by its size).
func countKeys(m *ebpf.Map) int {
	var n int
	var k, next uint32
	for err := m.NextKey(nil, &next); err == nil && n <= int(m.MaxEntries()); err = m.NextKey(k, &next) {
		k = next
		n++
	}
	return n
}

// bpfStatsEnabled reports whether the kernel collects program run time.
func bpfStatsEnabled() bool {
	v, err := procfs.Sysctl("kernel/bpf_stats_enabled")
	return err == nil && v == "1"
}
