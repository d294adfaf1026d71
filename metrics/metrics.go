// Package metrics owns copyscope's metrics contract: the cumulative counters a
// probe reports for one subject, the per-interval Record derived from two of
// them, and its JSON form (see docs/design.md, "Metrics contract").
//
// A field a probe mode cannot measure is absent (nil), never zero.
package metrics

import (
	"time"
)

// Mode names how counters were obtained.
type Mode string

const (
	// ModeEBPF counts are exact, from kernel tracepoints.
	ModeEBPF Mode = "ebpf"
	// ModeProc counts are estimates from /proc task counters.
	ModeProc Mode = "proc"
	// ModeEBPFLow counts come from the low-cost eBPF probes (socket and
	// page-cache tracepoints, no syscall tracepoint): some are estimates,
	// and records are marked as such.
	ModeEBPFLow Mode = "ebpf-low"
)

// Kind names what a subject is.
type Kind string

// The kinds of subject: a transfer path (demo, bench), a thread, a
// process, a command name or a local port (watch --by).
const (
	KindPath    Kind = "path"
	KindThread  Kind = "thread"
	KindProcess Kind = "process"
	KindComm    Kind = "comm"
	KindPort    Kind = "port"
)

// FdClass classifies the file descriptor a copy went through.
type FdClass int

// The fd classes, in the order of bpf/headers/classes.h's enum fd_class
// (probes checks it at compile time); NumClasses counts them.
const (
	ClassFile FdClass = iota
	ClassSocket
	ClassPipe
	ClassOther
	NumClasses
)

var classNames = [NumClasses]string{"file", "socket", "pipe", "other"}

// String returns the JSON name of the class.
func (c FdClass) String() string {
	if c < 0 || c >= NumClasses {
		return "invalid"
	}
	return classNames[c]
}

// ByClass holds a byte count per fd class.
type ByClass [NumClasses]uint64

// Total sums all classes.
func (b ByClass) Total() uint64 {
	var t uint64
	for _, v := range b {
		t += v
	}
	return t
}

// Sub returns b - o per class, clamped at zero.
func (b ByClass) Sub(o ByClass) ByClass {
	var r ByClass
	for i := range b {
		r[i] = sat(b[i], o[i])
	}
	return r
}

// Add returns b + o per class.
func (b ByClass) Add(o ByClass) ByClass {
	var r ByClass
	for i := range b {
		r[i] = b[i] + o[i]
	}
	return r
}

// Map returns every class by name, zeros included, for JSON.
func (b ByClass) Map() map[string]uint64 {
	m := make(map[string]uint64, NumClasses)
	for i, v := range b {
		m[classNames[i]] = v
	}
	return m
}

// Field is one measurable metric; a Fields set says which ones a probe
// mode actually measured.
type Field uint32

// The fields, one bit each, named after the metrics-contract fields they
// stand for (FDelivered: delivered_bytes, FCPU: cpu_ns, ...).
const (
	FDelivered Field = 1 << iota
	FSyscalls
	FSyscallsByName
	FCopiedToUser
	FCopiedFromUser
	FMovedInKernel
	FZerocopy
	FPageFaults
	FFileFaults
	FCtxSwitches
	FCPU
	FPageCache
	FDiskRead
	FCopyClasses // copies are broken down by fd class
	FReceived
	FUringOps // io_uring operations by opcode

	// FAll is every field the eBPF mode can measure.
	FAll = FDelivered | FSyscalls | FSyscallsByName | FCopiedToUser | FCopiedFromUser |
		FMovedInKernel | FZerocopy | FPageFaults | FFileFaults | FCtxSwitches | FCPU |
		FPageCache | FDiskRead | FCopyClasses | FReceived | FUringOps
)

// Has reports whether every field in want is in f.
func (f Field) Has(want Field) bool { return f&want == want }

// Counters are cumulative counts for one subject since it was first watched.
// Only the fields in Measured mean anything.
type Counters struct {
	Measured Field

	DeliveredBytes      uint64
	ReceivedBytes       uint64
	Syscalls            uint64
	SyscallsByName      map[string]uint64
	CopiedToUser        ByClass
	CopiedFromUser      ByClass
	MovedInKernel       ByClass
	ZerocopyBytes       uint64
	ZerocopyCopiedBytes uint64
	PageFaults          uint64
	FileFaults          uint64
	CtxVoluntary        uint64
	CtxInvoluntary      uint64
	CPUNs               uint64
	PageCacheMisses     uint64
	DiskReadBytes       uint64
	UringOps            UringOps
}

// Add returns the sum of two counters (to merge threads into a process).
// The measured set is the intersection.
func (c Counters) Add(o Counters) Counters {
	r := Counters{
		Measured:            c.Measured & o.Measured,
		DeliveredBytes:      c.DeliveredBytes + o.DeliveredBytes,
		ReceivedBytes:       c.ReceivedBytes + o.ReceivedBytes,
		Syscalls:            c.Syscalls + o.Syscalls,
		CopiedToUser:        c.CopiedToUser.Add(o.CopiedToUser),
		CopiedFromUser:      c.CopiedFromUser.Add(o.CopiedFromUser),
		MovedInKernel:       c.MovedInKernel.Add(o.MovedInKernel),
		ZerocopyBytes:       c.ZerocopyBytes + o.ZerocopyBytes,
		ZerocopyCopiedBytes: c.ZerocopyCopiedBytes + o.ZerocopyCopiedBytes,
		PageFaults:          c.PageFaults + o.PageFaults,
		FileFaults:          c.FileFaults + o.FileFaults,
		CtxVoluntary:        c.CtxVoluntary + o.CtxVoluntary,
		CtxInvoluntary:      c.CtxInvoluntary + o.CtxInvoluntary,
		CPUNs:               c.CPUNs + o.CPUNs,
		PageCacheMisses:     c.PageCacheMisses + o.PageCacheMisses,
		DiskReadBytes:       c.DiskReadBytes + o.DiskReadBytes,
		UringOps:            c.UringOps.add(o.UringOps),
	}
	if c.SyscallsByName != nil || o.SyscallsByName != nil {
		r.SyscallsByName = make(map[string]uint64, len(c.SyscallsByName)+len(o.SyscallsByName))
		for k, v := range c.SyscallsByName {
			r.SyscallsByName[k] += v
		}
		for k, v := range o.SyscallsByName {
			r.SyscallsByName[k] += v
		}
	}
	return r
}

// Sub returns c - prev field by field (clamped at zero, so a restarted
// counter never yields a huge delta). The measured set is c's.
func (c Counters) Sub(prev Counters) Counters {
	r := Counters{
		Measured:            c.Measured,
		DeliveredBytes:      sat(c.DeliveredBytes, prev.DeliveredBytes),
		ReceivedBytes:       sat(c.ReceivedBytes, prev.ReceivedBytes),
		Syscalls:            sat(c.Syscalls, prev.Syscalls),
		CopiedToUser:        c.CopiedToUser.Sub(prev.CopiedToUser),
		CopiedFromUser:      c.CopiedFromUser.Sub(prev.CopiedFromUser),
		MovedInKernel:       c.MovedInKernel.Sub(prev.MovedInKernel),
		ZerocopyBytes:       sat(c.ZerocopyBytes, prev.ZerocopyBytes),
		ZerocopyCopiedBytes: sat(c.ZerocopyCopiedBytes, prev.ZerocopyCopiedBytes),
		PageFaults:          sat(c.PageFaults, prev.PageFaults),
		FileFaults:          sat(c.FileFaults, prev.FileFaults),
		CtxVoluntary:        sat(c.CtxVoluntary, prev.CtxVoluntary),
		CtxInvoluntary:      sat(c.CtxInvoluntary, prev.CtxInvoluntary),
		CPUNs:               sat(c.CPUNs, prev.CPUNs),
		PageCacheMisses:     sat(c.PageCacheMisses, prev.PageCacheMisses),
		DiskReadBytes:       sat(c.DiskReadBytes, prev.DiskReadBytes),
		UringOps:            c.UringOps.sub(prev.UringOps),
	}
	if c.SyscallsByName != nil {
		r.SyscallsByName = make(map[string]uint64, len(c.SyscallsByName))
		for k, v := range c.SyscallsByName {
			if d := sat(v, prev.SyscallsByName[k]); d > 0 {
				r.SyscallsByName[k] = d
			}
		}
	}
	return r
}

// SentFlowCopies is the CPU copies of the file->socket flow: bytes copied
// into user memory from files and pipes, plus bytes copied from user
// memory into sockets. Copies through other fds (terminals, eventfds,
// anonymous inodes) belong to neither flow; /dev/null and /dev/zero copy
// nothing and are not counted at all.
func (c Counters) SentFlowCopies() uint64 {
	return c.CopiedToUser[ClassFile] + c.CopiedToUser[ClassPipe] + c.CopiedFromUser[ClassSocket]
}

// ReceivedFlowCopies is the CPU copies of the socket->file flow: bytes
// copied into user memory from sockets, plus bytes copied from user memory
// into files and pipes.
func (c Counters) ReceivedFlowCopies() uint64 {
	return c.CopiedToUser[ClassSocket] + c.CopiedFromUser[ClassFile] + c.CopiedFromUser[ClassPipe]
}

func sat(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// Subject identifies what a record is about.
type Subject struct {
	Kind Kind
	Name string
}

// Snapshot is every watched subject's cumulative counters at one instant.
type Snapshot struct {
	Time     time.Time
	Mode     Mode
	Subjects map[Subject]Counters
}

// Record is one subject's activity over one measured interval, in the JSON
// form of the metrics contract. Pointer fields are nil when not measured
// and are then left out of the JSON.
type Record struct {
	TS        time.Time `json:"ts"`
	IntervalS float64   `json:"interval_s"`
	Mode      Mode      `json:"mode"`
	Estimate  bool      `json:"estimate,omitempty"`
	Kind      Kind      `json:"kind"`
	Subject   string    `json:"subject"`
	// Interval is "total" on the summary record that covers a whole run,
	// absent on per-interval records.
	Interval string `json:"interval,omitempty"`

	DeliveredBytes       *uint64           `json:"delivered_bytes,omitempty"`
	ReceivedBytes        *uint64           `json:"received_bytes,omitempty"`
	Syscalls             *uint64           `json:"syscalls,omitempty"`
	SyscallsByName       map[string]uint64 `json:"syscalls_by_name,omitempty"`
	ModeSwitches         *uint64           `json:"mode_switches,omitempty"`
	CopiedToUserBytes    *uint64           `json:"copied_to_user_bytes,omitempty"`
	CopiedFromUserBytes  *uint64           `json:"copied_from_user_bytes,omitempty"`
	MovedInKernelBytes   *uint64           `json:"moved_in_kernel_bytes,omitempty"`
	CopiedToUserByClass  map[string]uint64 `json:"copied_to_user_by_class,omitempty"`
	CopiedFromUserByCls  map[string]uint64 `json:"copied_from_user_by_class,omitempty"`
	MovedInKernelByClass map[string]uint64 `json:"moved_in_kernel_by_class,omitempty"`
	ZerocopyBytes        *uint64           `json:"zerocopy_bytes,omitempty"`
	ZerocopyCopiedBytes  *uint64           `json:"zerocopy_copied_bytes,omitempty"`
	PageFaults           *uint64           `json:"page_faults,omitempty"`
	FileFaults           *uint64           `json:"file_faults,omitempty"`
	CtxSwitchesVol       *uint64           `json:"ctx_switches_voluntary,omitempty"`
	CtxSwitchesInvol     *uint64           `json:"ctx_switches_involuntary,omitempty"`
	CPUNs                *uint64           `json:"cpu_ns,omitempty"`
	PageCacheMisses      *uint64           `json:"page_cache_misses,omitempty"`
	DiskReadBytes        *uint64           `json:"disk_read_bytes,omitempty"`
	// UringOps: io_uring operations by opcode; present (maybe empty)
	// whenever they were measured.
	UringOps map[string]UringOp `json:"io_uring_ops,omitempty"`

	// UsefulBytes and WastedBytes split the record bytes delivered when a
	// record filter is measured (bench --selectivity): the bytes the
	// consumer wanted and those it received only to throw away. Absent
	// when no filter was measured.
	UsefulBytes *uint64 `json:"useful_bytes,omitempty"`
	WastedBytes *uint64 `json:"wasted_bytes,omitempty"`

	// CopiesPerSentByte is SentFlowCopies per delivered byte, absent when
	// nothing was delivered; CopiesPerReceivedByte is ReceivedFlowCopies
	// per received byte, absent when nothing was received.
	CopiesPerSentByte     *float64 `json:"copies_per_sent_byte,omitempty"`
	CopiesPerReceivedByte *float64 `json:"copies_per_received_byte,omitempty"`

	// Rates over the measured interval (per second).
	DeliveredBytesPerS *float64 `json:"delivered_bytes_per_s,omitempty"`
	ReceivedBytesPerS  *float64 `json:"received_bytes_per_s,omitempty"`
	SyscallsPerS       *float64 `json:"syscalls_per_s,omitempty"`
	// CPU cost per delivered byte, in nanoseconds per GB (1e9 bytes).
	CPUNsPerGB *float64 `json:"cpu_ns_per_gb,omitempty"`
}

func u64(v uint64) *uint64   { return &v }
func f64(v float64) *float64 { return &v }

// FromDelta builds a Record from counters that already hold one interval's
// deltas (cur.Sub(prev)) measured over interval. It is long on purpose:
// one short block per field of the contract, each setting the field only
// when it was measured, so the absent-never-zero rule reads in one place.
func FromDelta(ts time.Time, interval time.Duration, mode Mode, s Subject, d Counters) Record {
	r := Record{
		TS:        ts.UTC(),
		IntervalS: interval.Seconds(),
		Mode:      mode,
		Estimate:  mode == ModeProc || mode == ModeEBPFLow,
		Kind:      s.Kind,
		Subject:   s.Name,
	}
	m := d.Measured
	secs := interval.Seconds()
	if m.Has(FDelivered) {
		r.DeliveredBytes = u64(d.DeliveredBytes)
		if secs > 0 {
			r.DeliveredBytesPerS = f64(float64(d.DeliveredBytes) / secs)
		}
	}
	if m.Has(FReceived) {
		r.ReceivedBytes = u64(d.ReceivedBytes)
		if secs > 0 {
			r.ReceivedBytesPerS = f64(float64(d.ReceivedBytes) / secs)
		}
	}
	if m.Has(FSyscalls) {
		r.Syscalls = u64(d.Syscalls)
		r.ModeSwitches = u64(2 * d.Syscalls)
		if secs > 0 {
			r.SyscallsPerS = f64(float64(d.Syscalls) / secs)
		}
	}
	if m.Has(FSyscallsByName) {
		r.SyscallsByName = d.SyscallsByName
		if r.SyscallsByName == nil {
			r.SyscallsByName = map[string]uint64{}
		}
	}
	if m.Has(FCopiedToUser) {
		r.CopiedToUserBytes = u64(d.CopiedToUser.Total())
		if m.Has(FCopyClasses) {
			r.CopiedToUserByClass = d.CopiedToUser.Map()
		}
	}
	if m.Has(FCopiedFromUser) {
		r.CopiedFromUserBytes = u64(d.CopiedFromUser.Total())
		if m.Has(FCopyClasses) {
			r.CopiedFromUserByCls = d.CopiedFromUser.Map()
		}
	}
	if m.Has(FMovedInKernel) {
		// Once per delivery: a move into a pipe (splice's first leg, tee,
		// vmsplice) is counted again when the pipe is drained, so it is
		// kept in the by-class breakdown only.
		r.MovedInKernelBytes = u64(d.MovedInKernel.Total() - d.MovedInKernel[ClassPipe])
		if m.Has(FCopyClasses) {
			r.MovedInKernelByClass = d.MovedInKernel.Map()
		}
	}
	if m.Has(FZerocopy) {
		r.ZerocopyBytes = u64(d.ZerocopyBytes)
		r.ZerocopyCopiedBytes = u64(d.ZerocopyCopiedBytes)
	}
	copies := FCopiedToUser | FCopiedFromUser | FCopyClasses
	if m.Has(FDelivered|copies) && d.DeliveredBytes > 0 {
		r.CopiesPerSentByte = f64(float64(d.SentFlowCopies()) / float64(d.DeliveredBytes))
	}
	if m.Has(FReceived|copies) && d.ReceivedBytes > 0 {
		r.CopiesPerReceivedByte = f64(float64(d.ReceivedFlowCopies()) / float64(d.ReceivedBytes))
	}
	if m.Has(FPageFaults) {
		r.PageFaults = u64(d.PageFaults)
	}
	if m.Has(FFileFaults) {
		r.FileFaults = u64(d.FileFaults)
	}
	if m.Has(FCtxSwitches) {
		r.CtxSwitchesVol = u64(d.CtxVoluntary)
		r.CtxSwitchesInvol = u64(d.CtxInvoluntary)
	}
	if m.Has(FCPU) {
		r.CPUNs = u64(d.CPUNs)
		if m.Has(FDelivered) && d.DeliveredBytes > 0 {
			r.CPUNsPerGB = f64(float64(d.CPUNs) / float64(d.DeliveredBytes) * 1e9)
		}
	}
	if m.Has(FPageCache) {
		r.PageCacheMisses = u64(d.PageCacheMisses)
	}
	if m.Has(FDiskRead) {
		r.DiskReadBytes = u64(d.DiskReadBytes)
	}
	if m.Has(FUringOps) && len(d.UringOps) > 0 {
		r.UringOps = d.UringOps
	}
	return r
}

// Records turns two snapshots into one Record per subject present in cur,
// using the measured time between them (never a nominal interval). A
// subject new in cur is measured from zero.
func Records(prev, cur Snapshot) []Record {
	interval := cur.Time.Sub(prev.Time)
	out := make([]Record, 0, len(cur.Subjects))
	for s, c := range cur.Subjects {
		out = append(out, FromDelta(cur.Time, interval, cur.Mode, s, c.Sub(prev.Subjects[s])))
	}
	SortRecords(out)
	return out
}

// Totals is one summary Record per subject over a whole run, from the
// snapshot taken when watching began to the last one (Interval "total").
// A subject absent from first is measured from zero.
func Totals(first, last Snapshot) []Record {
	rs := Records(first, last)
	for i := range rs {
		rs[i].Interval = "total"
	}
	return rs
}
