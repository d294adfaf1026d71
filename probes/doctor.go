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

// Check is one line of the doctor's report.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn, fail or info
	Value  string `json:"value"`
	Fix    string `json:"fix,omitempty"`
}

// TracepointCheck says whether one tracepoint exists and can carry a program.
type TracepointCheck struct {
	Tracepoint
	Feeds  []string `json:"feeds"`
	Exists string   `json:"exists"` // yes, no, or unknown (why)
	Status string   `json:"status"` // ok, fail (required) or warn (optional)
	Fix    string   `json:"fix,omitempty"`
}

// MetricStatus says how one metric will be measured.
type MetricStatus struct {
	Metric string `json:"metric"`
	Status string `json:"status"` // exact, estimated or missing
	Source string `json:"source"`
	Fix    string `json:"fix,omitempty"`
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
	var rep Report
	add := func(c Check) { rep.Checks = append(rep.Checks, c) }

	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		rep.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
		add(Check{Name: "kernel", Status: "info", Value: rep.Kernel})
	} else {
		add(Check{Name: "kernel", Status: "warn", Value: "uname: " + err.Error()})
	}

	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	if btfErr == nil {
		add(Check{Name: "btf", Status: "ok", Value: "/sys/kernel/btf/vmlinux present"})
	} else {
		add(Check{Name: "btf", Status: "fail", Value: btfErr.Error(),
			Fix: "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2021)"})
	}

	add(lockdownCheck())

	caps, capErr := effectiveCaps()
	hasCap := func(bit uint) bool { return caps&(1<<bit) != 0 }
	if capErr != nil {
		add(Check{Name: "capabilities", Status: "warn", Value: capErr.Error()})
	} else {
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
		c := Check{Name: "capabilities", Status: "ok", Value: fmt.Sprintf("CapEff %#x: have %s", caps, strings.Join(have, " "))}
		if len(have) == 0 {
			c.Value = fmt.Sprintf("CapEff %#x: none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN", caps)
		}
		if !(hasCap(capBPF) && hasCap(capPerfmon)) && !hasCap(capSysAdmin) {
			c.Status, c.Fix = "fail", fixRoot
			c.Value += "; missing " + strings.Join(miss, " ")
		}
		add(c)
	}

	tracefs, tfErr := tracefsMount()
	switch {
	case errors.Is(tfErr, errTracefsUnreadable):
		add(Check{Name: "tracefs", Status: "fail", Value: tfErr.Error(), Fix: fixRoot})
	case tfErr != nil:
		add(Check{Name: "tracefs", Status: "fail", Value: tfErr.Error(), Fix: "mount -t tracefs nodev /sys/kernel/tracing"})
	default:
		add(Check{Name: "tracefs", Status: "ok", Value: "mounted at " + tracefs})
	}

	if cg := Cgroup2Mount(); fileExists(cg + "/cgroup.procs") {
		add(Check{Name: "cgroup v2", Status: "ok", Value: "mounted at " + cg + " (watch --cgroup)"})
	} else {
		add(Check{Name: "cgroup v2", Status: "warn", Value: "not mounted: watch --cgroup will not work",
			Fix: "mount -t cgroup2 none /sys/fs/cgroup"})
	}

	for _, c := range []struct{ name, path, meaning string }{
		{"unprivileged_bpf_disabled", "kernel/unprivileged_bpf_disabled", "0: anyone may load socket filters; 1 or 2: BPF needs privileges (copyscope needs them anyway)"},
		{"perf_event_paranoid", "kernel/perf_event_paranoid", "tracepoint programs need CAP_PERFMON whatever its value"},
	} {
		v, err := procfs.Sysctl(c.path)
		if err != nil {
			add(Check{Name: c.name, Status: "info", Value: "unreadable: " + err.Error()})
			continue
		}
		add(Check{Name: c.name, Status: "info", Value: v + " (" + c.meaning + ")"})
	}

	// Try a tiny program on each attach kind the probes use.
	tpErr := tryTracepoint("raw_syscalls", "sys_enter")
	btfTPErr := tryTPBTF("sched_switch")
	add(attachCheck("tracepoint program (raw_syscalls/sys_enter)", tpErr, "fail"))
	add(attachCheck("tp_btf program (sched_switch via BTF)", btfTPErr, "fail"))
	kpErr := tryKprobe("vfs_read")
	feErr := tryFentry("vfs_read")
	add(attachCheck("kprobe (informational, never required)", kpErr, "info"))
	add(attachCheck("fentry (informational, never required)", feErr, "info"))

	// Tracepoints, one by one.
	lost := metrics.Field(0) // fields whose feeding event is unusable
	var requiredBroken []string
	for _, tp := range Tracepoints() {
		tc := TracepointCheck{Tracepoint: tp, Status: "ok"}
		for _, mf := range metricFields() {
			if tp.Fields&mf.field != 0 {
				tc.Feeds = append(tc.Feeds, mf.name)
			}
		}
		attachErr := tpErr
		if tp.Attach == "tp_btf" {
			attachErr = btfTPErr
		}
		switch {
		case errors.Is(tfErr, errTracefsUnreadable):
			tc.Exists = "unknown (tracefs not readable)"
		case tfErr != nil:
			tc.Exists = "unknown (tracefs not mounted)"
		default:
			_, err := os.Stat(tracefs + "/events/" + tp.Group + "/" + tp.Event)
			switch {
			case err == nil:
				tc.Exists = "yes"
			case errors.Is(err, os.ErrNotExist):
				tc.Exists = "no"
				attachErr = fmt.Errorf("event %s does not exist in this kernel", tp.Name())
			default:
				tc.Exists = "unknown (" + err.Error() + ")"
			}
		}
		if attachErr != nil {
			// The attach checks above carry the fix for a generic failure.
			tc.Status, tc.Fix = "warn", "see the "+tp.Attach+" program check"
			if tc.Exists == "no" {
				tc.Fix = "this kernel lacks the event (CONFIG for " + tp.Group + "); " + tp.Lost
			}
			if tp.Required {
				tc.Status = "fail"
				requiredBroken = append(requiredBroken, tp.Name())
			}
			lost |= tp.Fields
		}
		rep.Tracepoints = append(rep.Tracepoints, tc)
	}
	rep.EBPFPossible = len(requiredBroken) == 0
	rep.Mode = metrics.ModeProc
	if rep.EBPFPossible {
		rep.Mode = metrics.ModeEBPF
	} else {
		why := firstErr(btfTPErr, tpErr)
		if why == nil {
			why = errors.New("the events do not exist in this kernel")
		}
		rep.Why = fmt.Sprintf("eBPF mode is impossible: required %s cannot be attached: %s (fix: %s)",
			strings.Join(requiredBroken, ", "), ErrorSummary(why), fixFor(why, tfErr, btfErr))
	}

	for _, mf := range metricFields() {
		ms := MetricStatus{Metric: mf.name}
		switch {
		case rep.EBPFPossible && lost&mf.field == 0:
			ms.Status, ms.Source = "exact", "ebpf"
		case procMeasured&mf.field != 0:
			ms.Status, ms.Source = "estimated", "proc"
			if mf.field == metrics.FSyscalls {
				ms.Source = "proc: syscr+syscw, read/write family only (a lower bound)"
			}
			ms.Fix = fixFor(firstErr(btfTPErr, tpErr), tfErr, btfErr)
		default:
			ms.Status, ms.Source = "missing", "needs eBPF"
			ms.Fix = fixFor(firstErr(btfTPErr, tpErr), tfErr, btfErr)
		}
		if rep.EBPFPossible && lost&mf.field != 0 {
			for _, tc := range rep.Tracepoints {
				if tc.Fields&mf.field != 0 && tc.Status != "ok" {
					ms.Fix = tc.Name() + ": " + tc.Fix
					break
				}
			}
		}
		rep.Metrics = append(rep.Metrics, ms)
	}
	return rep
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

func attachCheck(name string, err error, failStatus string) Check {
	if err == nil {
		return Check{Name: name, Status: "ok", Value: "loaded and attached"}
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
	if failStatus != "info" {
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
		c := Check{Name: "lockdown", Status: "info", Value: mode}
		if mode != "none" {
			c.Value += " (kprobes and fentry refused; tracepoints and tp_btf still work)"
		}
		return c
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/kernel/security", &st) != nil || st.Type != unix.SECURITYFS_MAGIC {
		return Check{Name: "lockdown", Status: "info", Value: "unknown (securityfs not mounted)",
			Fix: "mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lockdown (the kprobe/fentry lines below show its effect)"}
	}
	return Check{Name: "lockdown", Status: "info", Value: "unknown (" + err.Error() + "; kernel without CONFIG_SECURITY_LOCKDOWN_LSM?)"}
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
