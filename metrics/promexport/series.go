package promexport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
)

// subjectLabelNames label every per-subject series.
var subjectLabelNames = []string{"subject_kind", "subject", "comm", "pid"}

func subjectDesc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string(nil), subjectLabelNames...), extra...), nil)
}

// The per-subject counters, one per metrics-contract field.
var (
	descSent        = subjectDesc("copyscope_sent_bytes_total", "Bytes the subject put onto sockets, by any means (delivered_bytes).")
	descReceived    = subjectDesc("copyscope_received_bytes_total", "Bytes the subject took off sockets, by any means (received_bytes).")
	descSyscalls    = subjectDesc("copyscope_syscalls_total", "Syscalls made, by name; syscall=\"all\" when the probe mode cannot name them.", "syscall")
	descCopied      = subjectDesc("copyscope_cpu_copied_bytes_total", "Bytes copied by the CPU between user and kernel memory, by direction (to_user, from_user) and fd class.", "direction", "fd_class")
	descMoved       = subjectDesc("copyscope_moved_in_kernel_bytes_total", "Bytes moved by reference in the kernel (sendfile, splice, tee, copy_file_range), by destination fd class.", "fd_class")
	descZerocopy    = subjectDesc("copyscope_zerocopy_bytes_total", "Bytes sent with MSG_ZEROCOPY or io_uring SEND_ZC.")
	descZCCopied    = subjectDesc("copyscope_zerocopy_copied_bytes_total", "Of the zerocopy bytes, those the kernel copied anyway.")
	descFaults      = subjectDesc("copyscope_page_faults_total", "User page faults.")
	descFileFaults  = subjectDesc("copyscope_file_faults_total", "Page faults on file mappings.")
	descCtx         = subjectDesc("copyscope_context_switches_total", "Context switches away from the subject, by kind (voluntary: it slept; involuntary: it was preempted).", "kind")
	descCPU         = subjectDesc("copyscope_cpu_seconds_total", "Time on CPU.")
	descCacheMisses = subjectDesc("copyscope_page_cache_misses_total", "Pages added to the page cache (misses).")
	descDiskRead    = subjectDesc("copyscope_disk_read_bytes_total", "Bytes read from block devices for the subject.")

	descUringOps   = subjectDesc("copyscope_io_uring_operations_total", "io_uring operations by opcode and state (submitted, completed, failed).", "op", "state")
	descUringBytes = subjectDesc("copyscope_io_uring_bytes_total", "Bytes io_uring operations moved (positive results), by opcode.", "op")

	descInfo   = prometheus.NewDesc("copyscope_probe_info", "The probes behind the counters: mode (ebpf exact, proc estimates), estimate, grouping and cost level (exact, low, or low/N: the low-cost mode sampled 1/N of the time, --duty N).", []string{"mode", "estimate", "grouping", "cost"}, nil)
	descFolded = prometheus.NewDesc("copyscope_exporter_subjects_folded", "Subjects summed into subject=\"_other\" because of the subject limit.", nil, nil)

	descProgRuns    = prometheus.NewDesc("copyscope_probe_program_runs_total", "Runs of each attached BPF program, any thread's (needs sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil)
	descProgSeconds = prometheus.NewDesc("copyscope_probe_program_run_seconds_total", "Time spent in each attached BPF program (needs sysctl kernel.bpf_stats_enabled=1).", []string{"program"}, nil)
	descDropped     = prometheus.NewDesc("copyscope_probe_dropped_events_total", "Events the probes could not count, by reason.", []string{"reason"}, nil)
	descEntries     = prometheus.NewDesc("copyscope_probe_map_entries", "Per-thread entries held by the probes, by map.", []string{"map"}, nil)
)

var classLabels = [metrics.NumClasses]string{"file", "socket", "pipe", "other"}

// collectSubject sends one subject's series: only fields its mode measured.
func collectSubject(ch chan<- prometheus.Metric, labels []string, c metrics.Counters) {
	counter := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append(append([]string(nil), labels...), extra...)...)
	}
	m := c.Measured
	if m.Has(metrics.FDelivered) {
		counter(descSent, float64(c.DeliveredBytes))
	}
	if m.Has(metrics.FReceived) {
		counter(descReceived, float64(c.ReceivedBytes))
	}
	switch {
	case m.Has(metrics.FSyscallsByName):
		for name, n := range c.SyscallsByName {
			counter(descSyscalls, float64(n), name)
		}
	case m.Has(metrics.FSyscalls):
		counter(descSyscalls, float64(c.Syscalls), "all")
	}
	byClass := func(d *prometheus.Desc, b metrics.ByClass, pre ...string) {
		if !m.Has(metrics.FCopyClasses) {
			counter(d, float64(b.Total()), append(pre, "all")...)
			return
		}
		for i, v := range b {
			counter(d, float64(v), append(pre, classLabels[i])...)
		}
	}
	if m.Has(metrics.FCopiedToUser) {
		byClass(descCopied, c.CopiedToUser, "to_user")
	}
	if m.Has(metrics.FCopiedFromUser) {
		byClass(descCopied, c.CopiedFromUser, "from_user")
	}
	if m.Has(metrics.FMovedInKernel) {
		byClass(descMoved, c.MovedInKernel)
	}
	if m.Has(metrics.FZerocopy) {
		counter(descZerocopy, float64(c.ZerocopyBytes))
		counter(descZCCopied, float64(c.ZerocopyCopiedBytes))
	}
	if m.Has(metrics.FPageFaults) {
		counter(descFaults, float64(c.PageFaults))
	}
	if m.Has(metrics.FFileFaults) {
		counter(descFileFaults, float64(c.FileFaults))
	}
	if m.Has(metrics.FCtxSwitches) {
		counter(descCtx, float64(c.CtxVoluntary), "voluntary")
		counter(descCtx, float64(c.CtxInvoluntary), "involuntary")
	}
	if m.Has(metrics.FCPU) {
		counter(descCPU, float64(c.CPUNs)/1e9)
	}
	if m.Has(metrics.FPageCache) {
		counter(descCacheMisses, float64(c.PageCacheMisses))
	}
	if m.Has(metrics.FDiskRead) {
		counter(descDiskRead, float64(c.DiskReadBytes))
	}
	if m.Has(metrics.FUringOps) {
		for op, o := range c.UringOps {
			counter(descUringOps, float64(o.Submitted), op, "submitted")
			counter(descUringOps, float64(o.Completed), op, "completed")
			counter(descUringOps, float64(o.Failed), op, "failed")
			counter(descUringBytes, float64(o.Bytes), op)
		}
	}
}

// collectCost sends the copyscope_probe_* series.
func collectCost(ch chan<- prometheus.Metric, cost probes.Cost) {
	for _, p := range cost.Programs {
		if !p.Measured {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descProgRuns, prometheus.CounterValue, float64(p.Runs), p.Name)
		ch <- prometheus.MustNewConstMetric(descProgSeconds, prometheus.CounterValue, p.RunTime.Seconds(), p.Name)
	}
	for why, n := range cost.Dropped {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(n), why)
	}
	for name, n := range cost.Entries {
		ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(n), name)
	}
}
