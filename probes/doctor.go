//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
)

// Tracepoints lists every event the eBPF backend uses, in attach order,
// from the same table OpenEBPF attaches from, as the default counting mode
// (syscalls counted as they return) uses them: a program only the other
// mode attaches is listed as optional, feeding nothing.
func Tracepoints() []Tracepoint {
	descs := ebpfPrograms()
	out := make([]Tracepoint, 0, len(descs))
	for _, d := range descs {
		d, used := d.forMode(countAtReturn)
		t := Tracepoint{Program: d.name, Attach: "tracepoint", Group: d.group, Event: d.event,
			Required: d.required, Fields: d.fields, Lost: d.lost}
		if d.btf {
			t.Attach = "tp_btf"
		}
		if !used {
			t.Required, t.Fields = false, 0
		}
		out = append(out, t)
	}
	return out
}

// metricFields names each metrics-contract field and its Field bit.
func metricFields() []struct {
	name  string
	field metrics.Field
} {
	return []struct {
		name  string
		field metrics.Field
	}{
		{"delivered_bytes", metrics.FDelivered},
		{"received_bytes", metrics.FReceived},
		{"syscalls", metrics.FSyscalls},
		{"syscalls_by_name", metrics.FSyscallsByName},
		{"copied_to_user_bytes", metrics.FCopiedToUser},
		{"copied_from_user_bytes", metrics.FCopiedFromUser},
		{"moved_in_kernel_bytes", metrics.FMovedInKernel},
		{"copies_by_fd_class", metrics.FCopyClasses},
		{"zerocopy_bytes", metrics.FZerocopy},
		{"page_faults", metrics.FPageFaults},
		{"file_faults", metrics.FFileFaults},
		{"ctx_switches", metrics.FCtxSwitches},
		{"cpu_ns", metrics.FCPU},
		{"page_cache_misses", metrics.FPageCache},
		{"disk_read_bytes", metrics.FDiskRead},
		{"io_uring_ops", metrics.FUringOps},
	}
}

// Capability bits in /proc/<pid>/status CapEff.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

const fixRoot = "run as root (sudo), or: sudo setcap cap_bpf,cap_perfmon+ep $(which copyscope)"

// Diagnose checks what this kernel and this process's privileges allow:
// kernel, BTF, lockdown, capabilities, tracefs, every tracepoint the probes
// use (existence, and a tiny program actually loaded and attached), tp_btf,
// kprobe and fentry (informational) and the BPF sysctls, then says how each
// metric will be measured. It loads only tiny asm-built programs and
// detaches them before returning.
func Diagnose() Report {
	var d diagnosis
	d.system()
	d.transferPaths()
	d.attachKinds()
	lost, broken := d.tracepoints()
	d.verdict(broken)
	d.metrics(lost)
	return d.rep
}

// diagnosis is a Report being built, with what its phases learn.
type diagnosis struct {
	rep             Report
	btfErr, tfErr   error  // BTF, tracefs
	tracefs         string // where tracefs is mounted
	tpErr, btfTPErr error  // a tiny tracepoint / tp_btf program
	fixEBPF         string // the fix for what keeps eBPF from working
}

func (d *diagnosis) add(c Check) { d.rep.Checks = append(d.rep.Checks, c) }

// system checks the kernel, BTF, lockdown, capabilities, tracefs, cgroup
// v2 and the BPF sysctls.
func (d *diagnosis) system() {
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		d.rep.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
		d.add(Check{Name: "kernel", Status: StatusInfo, Value: d.rep.Kernel})
	} else {
		d.add(Check{Name: "kernel", Status: StatusWarn, Value: "uname: " + err.Error()})
	}
	_, d.btfErr = os.Stat("/sys/kernel/btf/vmlinux")
	if d.btfErr == nil {
		d.add(Check{Name: "btf", Status: StatusOK, Value: "/sys/kernel/btf/vmlinux present"})
	} else {
		d.add(Check{Name: "btf", Status: StatusFail, Value: d.btfErr.Error(),
			Fix: "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2021)"})
	}
	d.add(lockdownCheck())
	d.add(capabilityCheck())
	d.tracefs, d.tfErr = tracefsMount()
	switch {
	case errors.Is(d.tfErr, errTracefsUnreadable):
		d.add(Check{Name: "tracefs", Status: StatusFail, Value: d.tfErr.Error(), Fix: fixRoot})
	case d.tfErr != nil:
		d.add(Check{Name: "tracefs", Status: StatusFail, Value: d.tfErr.Error(), Fix: "mount -t tracefs nodev /sys/kernel/tracing"})
	default:
		d.add(Check{Name: "tracefs", Status: StatusOK, Value: "mounted at " + d.tracefs})
	}
	if cg := Cgroup2Mount(); fileExists(cg + "/cgroup.procs") {
		d.add(Check{Name: "cgroup v2", Status: StatusOK, Value: "mounted at " + cg + " (watch --cgroup)"})
	} else {
		d.add(Check{Name: "cgroup v2", Status: StatusWarn, Value: "not mounted: watch --cgroup will not work",
			Fix: "mount -t cgroup2 none /sys/fs/cgroup"})
	}
	for _, c := range []struct{ name, path, meaning string }{
		{"unprivileged_bpf_disabled", "kernel/unprivileged_bpf_disabled", "0: anyone may load socket filters; 1 or 2: BPF needs privileges (copyscope needs them anyway)"},
		{"perf_event_paranoid", "kernel/perf_event_paranoid", "tracepoint programs need CAP_PERFMON whatever its value"},
	} {
		v, err := procfs.Sysctl(c.path)
		if err != nil {
			d.add(Check{Name: c.name, Status: StatusInfo, Value: "unreadable: " + err.Error()})
			continue
		}
		d.add(Check{Name: c.name, Status: StatusInfo, Value: v + " (" + c.meaning + ")"})
	}
}

// capabilityCheck says whether this process has what loading BPF needs:
// CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
func capabilityCheck() Check {
	caps, err := effectiveCaps()
	if err != nil {
		return Check{Name: "capabilities", Status: StatusWarn, Value: err.Error()}
	}
	hasCap := func(bit uint) bool { return caps&(1<<bit) != 0 }
	var have, miss []string
	for _, c := range []struct {
		name string
		bit  uint
	}{{"CAP_BPF", capBPF}, {"CAP_PERFMON", capPerfmon}, {"CAP_SYS_ADMIN", capSysAdmin}} {
		if hasCap(c.bit) {
			have = append(have, c.name)
		} else {
			miss = append(miss, c.name)
		}
	}
	c := Check{Name: "capabilities", Status: StatusOK, Value: fmt.Sprintf("CapEff %#x: have %s", caps, strings.Join(have, " "))}
	if len(have) == 0 {
		c.Value = fmt.Sprintf("CapEff %#x: none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN", caps)
	}
	if !(hasCap(capBPF) && hasCap(capPerfmon)) && !hasCap(capSysAdmin) {
		c.Status, c.Fix = StatusFail, fixRoot
		c.Value += "; missing " + strings.Join(miss, " ")
	}
	return c
}

// attachKinds tries a tiny program on each attach kind the probes use,
// and on kprobe and fentry for information.
func (d *diagnosis) attachKinds() {
	d.tpErr = tryTracepoint("raw_syscalls", "sys_enter")
	d.btfTPErr = tryTPBTF("sched_switch")
	d.add(attachCheck("tracepoint program (raw_syscalls/sys_enter)", d.tpErr, StatusFail))
	d.add(attachCheck("tp_btf program (sched_switch via BTF)", d.btfTPErr, StatusFail))
	d.add(attachCheck("kprobe (informational, never required)", tryKprobe("vfs_read"), StatusInfo))
	d.add(attachCheck("fentry (informational, never required)", tryFentry("vfs_read"), StatusInfo))
	d.fixEBPF = fixFor(firstErr(d.btfTPErr, d.tpErr), d.tfErr, d.btfErr)
}

// tracepoints checks every event the probes use, one by one, and returns
// the fields whose feeding event is unusable and the required events that
// cannot be attached.
func (d *diagnosis) tracepoints() (lost metrics.Field, broken []string) {
	for _, tp := range Tracepoints() {
		tc := TracepointCheck{Tracepoint: tp, Status: StatusOK}
		for _, mf := range metricFields() {
			if tp.Fields&mf.field != 0 {
				tc.Feeds = append(tc.Feeds, mf.name)
			}
		}
		attachErr := d.tpErr
		if tp.Attach == "tp_btf" {
			attachErr = d.btfTPErr
		}
		var missing error
		tc.Exists, missing = d.eventExists(tp)
		if missing != nil {
			attachErr = missing
		}
		if attachErr != nil {
			// The attach checks carry the fix for a generic failure.
			tc.Status, tc.Fix = StatusWarn, "see the "+tp.Attach+" program check"
			if tc.Exists == "no" {
				tc.Fix = "this kernel lacks the event (CONFIG for " + tp.Group + "); " + tp.Lost
			}
			if tp.Required {
				tc.Status = StatusFail
				broken = append(broken, tp.Name())
			}
			lost |= tp.Fields
		}
		d.rep.Tracepoints = append(d.rep.Tracepoints, tc)
	}
	return lost, broken
}

// eventExists looks the event up under tracefs: yes, no (with the error
// an attach would meet) or unknown (why).
func (d *diagnosis) eventExists(tp Tracepoint) (string, error) {
	switch {
	case errors.Is(d.tfErr, errTracefsUnreadable):
		return "unknown (tracefs not readable)", nil
	case d.tfErr != nil:
		return "unknown (tracefs not mounted)", nil
	}
	_, err := os.Stat(d.tracefs + "/events/" + tp.Group + "/" + tp.Event)
	switch {
	case err == nil:
		return "yes", nil
	case errors.Is(err, os.ErrNotExist):
		return "no", fmt.Errorf("event %s does not exist in this kernel", tp.Name())
	}
	return "unknown (" + err.Error() + ")", nil
}

// verdict says which mode watch --mode auto would use, and why not eBPF.
func (d *diagnosis) verdict(broken []string) {
	d.rep.EBPFPossible = len(broken) == 0
	d.rep.Mode = metrics.ModeProc
	if d.rep.EBPFPossible {
		d.rep.Mode = metrics.ModeEBPF
		return
	}
	why := firstErr(d.btfTPErr, d.tpErr)
	if why == nil {
		why = errors.New("the events do not exist in this kernel")
	}
	d.rep.Why = fmt.Sprintf("eBPF mode is impossible: required %s cannot be attached: %s (fix: %s)",
		strings.Join(broken, ", "), ErrorSummary(why), fixFor(why, d.tfErr, d.btfErr))
}

// metrics says how each metric of the contract will be measured.
func (d *diagnosis) metrics(lost metrics.Field) {
	for _, mf := range metricFields() {
		ms := MetricStatus{Metric: mf.name}
		switch {
		case d.rep.EBPFPossible && lost&mf.field == 0:
			ms.Status, ms.Source = QualityExact, "ebpf"
		case procMeasured&mf.field != 0:
			ms.Status, ms.Source = QualityEstimated, "proc"
			if mf.field == metrics.FSyscalls {
				ms.Source = "proc: syscr+syscw, read/write family only (a lower bound)"
			}
			ms.Fix = d.fixEBPF
		default:
			ms.Status, ms.Source = QualityMissing, "needs eBPF"
			ms.Fix = d.fixEBPF
		}
		if d.rep.EBPFPossible && lost&mf.field != 0 {
			for _, tc := range d.rep.Tracepoints {
				if tc.Fields&mf.field != 0 && tc.Status != StatusOK {
					ms.Fix = tc.Name() + ": " + tc.Fix
					break
				}
			}
		}
		d.rep.Metrics = append(d.rep.Metrics, ms)
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// fixFor turns a load or attach error into a one-line fix.
func fixFor(err, tracefsErr, btfErr error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fixRoot
	case tracefsErr != nil:
		return "mount -t tracefs nodev /sys/kernel/tracing"
	case btfErr != nil:
		return "boot a kernel with CONFIG_DEBUG_INFO_BTF=y"
	}
	return "see the error above (" + ErrorSummary(err) + ")"
}

func attachCheck(name string, err error, failStatus Status) Check {
	if err == nil {
		return Check{Name: name, Status: StatusOK, Value: "loaded and attached"}
	}
	c := Check{Name: name, Status: failStatus, Value: ErrorSummary(err)}
	switch {
	case errors.Is(err, unix.EPERM) && os.Geteuid() == 0:
		c.Value += " (EPERM as root: kernel lockdown or a security module forbids it)"
	case errors.Is(err, unix.EPERM):
		c.Value += " (EPERM)"
	case errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist):
		c.Value += " (ENOENT: not available in this kernel)"
	}
	if failStatus != StatusInfo {
		c.Fix = fixFor(err, nil, nil)
	}
	return c
}

// lockdownCheck reads /sys/kernel/security/lockdown.
func lockdownCheck() Check {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err == nil {
		mode := strings.TrimSpace(string(b))
		if i, j := strings.IndexByte(mode, '['), strings.IndexByte(mode, ']'); i >= 0 && j > i {
			mode = mode[i+1 : j]
		}
		c := Check{Name: "lockdown", Status: StatusInfo, Value: mode}
		if mode != "none" {
			c.Value += " (kprobes and fentry refused; tracepoints and tp_btf still work)"
		}
		return c
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/kernel/security", &st) != nil || st.Type != unix.SECURITYFS_MAGIC {
		return Check{Name: "lockdown", Status: StatusInfo, Value: "unknown (securityfs not mounted)",
			Fix: "mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lockdown (the kprobe/fentry lines below show its effect)"}
	}
	return Check{Name: "lockdown", Status: StatusInfo, Value: "unknown (" + err.Error() + "; kernel without CONFIG_SECURITY_LOCKDOWN_LSM?)"}
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	st, err := procfs.Self().Status()
	return st.CapEff, err
}

// errTracefsUnreadable: tracefs is mounted but this user cannot read it.
var errTracefsUnreadable = errors.New("tracefs events/ is not readable (run as root)")

// tracefsMount finds where tracefs is mounted, with events/ readable.
func tracefsMount() (string, error) {
	found, err := procfs.MountPoints("tracefs")
	if err != nil {
		return "", fmt.Errorf("read the mount table: %w", err)
	}
	for _, m := range found {
		if _, err := os.Stat(m + "/events"); err == nil {
			return m, nil
		}
	}
	if len(found) > 0 {
		return "", fmt.Errorf("mounted at %s, but %w", strings.Join(found, ", "), errTracefsUnreadable)
	}
	return "", errors.New("tracefs is not mounted")
}

// tinyProgram loads "return 0" as a program of the given kind.
func tinyProgram(spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	spec.License = "GPL"
	return ebpf.NewProgram(spec)
}

// tryTracepoint loads and attaches a tiny tracepoint program, then detaches.
func tryTracepoint(group, event string) error {
	prog, err := tinyProgram(&ebpf.ProgramSpec{Name: "cs_doctor_tp", Type: ebpf.TracePoint})
	if err != nil {
		return fmt.Errorf("load tracepoint program: %w", err)
	}
	defer prog.Close()
	l, err := link.Tracepoint(group, event, prog, nil)
	if err != nil {
		return fmt.Errorf("attach tracepoint %s/%s: %w", group, event, err)
	}
	return l.Close()
}

// tryTPBTF loads and attaches a tiny tp_btf program on a raw tracepoint.
func tryTPBTF(event string) error {
	prog, err := tinyProgram(&ebpf.ProgramSpec{Name: "cs_doctor_btf", Type: ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp, AttachTo: event})
	if err != nil {
		return fmt.Errorf("load tp_btf program for %s: %w", event, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach tp_btf/%s: %w", event, err)
	}
	return l.Close()
}

// tryKprobe tries a kprobe on symbol (informational).
func tryKprobe(symbol string) error {
	prog, err := tinyProgram(&ebpf.ProgramSpec{Name: "cs_doctor_kp", Type: ebpf.Kprobe})
	if err != nil {
		return fmt.Errorf("load kprobe program: %w", err)
	}
	defer prog.Close()
	l, err := link.Kprobe(symbol, prog, nil)
	if err != nil {
		return fmt.Errorf("attach kprobe %s: %w", symbol, err)
	}
	return l.Close()
}

// tryFentry tries an fentry program on a kernel function (informational).
func tryFentry(fn string) error {
	prog, err := tinyProgram(&ebpf.ProgramSpec{Name: "cs_doctor_fe", Type: ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry, AttachTo: fn})
	if err != nil {
		return fmt.Errorf("load fentry program for %s: %w", fn, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach fentry/%s: %w", fn, err)
	}
	return l.Close()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
