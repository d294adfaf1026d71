//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
)

// EBPFOptions configures OpenEBPF.
type EBPFOptions struct {
	// CountAtEntry counts syscalls as they are entered (a sys_enter program
	// on every syscall of every thread) instead of as they return. At
	// return, one program serves both the count and the bytes, which about
	// halves the probes' cost per syscall; exit and exit_group, which never
	// return, are counted when their thread exits, and a syscall still
	// blocked at a reading is counted once it returns.
	CountAtEntry bool
	// SkipOptional leaves out the optional programs (faults, page cache,
	// disk); only syscalls and sched_switch are attached. For overhead
	// measurements of the core set.
	SkipOptional bool
	// LowCost attaches no syscall tracepoint (bpf/lowcost.bpf.c): bytes
	// by transfer style from socket and page-cache tracepoints, some as
	// estimates, no syscall counts or faults; the mode is ModeEBPFLow.
	LowCost bool
	// Duty, with LowCost and above 1, samples: the byte-counting programs
	// are attached for 1/Duty of every DutyPeriod (default 1 s) at a
	// random offset and count every byte Duty times, so byte figures are
	// estimates at about 1/Duty of the cost (ebpf_duty.go). At most
	// MaxDuty.
	Duty       int
	DutyPeriod time.Duration
	// MaxThreads is how many threads can be counted at once (default
	// 4096; 4.2 KiB of kernel memory each). Exited threads' slots are
	// recycled at each Read; a thread beyond the limit is not counted and
	// Notes says so.
	MaxThreads int
	// NoFollowChildren leaves new child processes of watched processes
	// unwatched. By default a process forked by a process watched whole
	// (AddProcesses) is watched too, from its first syscall, in the kernel.
	NoFollowChildren bool
	// Ports, when not empty, limits the socket bytes counted (delivered,
	// received, and the copies and moves through sockets) to sockets whose
	// local or remote port is one of them; file and pipe bytes and the
	// syscalls themselves are counted as usual. Decided in the kernel.
	Ports []int
	// TrackPorts records, per thread, the local port of the socket it last
	// moved data on (Thread.Port), for grouping by port.
	TrackPorts bool
}

// progDesc says where one BPF program attaches and what is lost without it.
type progDesc struct {
	obj      string // bpf2go object: syscalls, sched, faults, iouring
	name     string // program (function) name in the object
	group    string // tracefs group (events/<group>/<event>), also of a tp_btf event
	event    string // tracepoint event (or the tp_btf name)
	btf      bool   // attached as tp_btf (a raw tracepoint with BTF), not a classic tracepoint
	required bool
	fields   metrics.Field // metrics that are missing when this program is
	lost     string        // what a missing optional program costs, for Notes
	// only is the one syscall counting mode that uses the program
	// (countAny: both); onReturn are the fields it adds when syscalls
	// are counted as they return.
	only     countMode
	onReturn metrics.Field
}

// countMode is where syscalls are counted (EBPFOptions.CountAtEntry).
type countMode int

const (
	countAny      countMode = iota // a program both modes use
	countAtEntry                   // sys_enter counts every syscall entered
	countAtReturn                  // sys_exit counts them as they return
)

// forMode is the program as one counting mode uses it, and whether that
// mode uses it at all.
func (d progDesc) forMode(m countMode) (progDesc, bool) {
	if d.only != countAny && d.only != m {
		return d, false
	}
	if m == countAtReturn {
		d.fields |= d.onReturn
	}
	return d, true
}

// ebpfPrograms lists every program copyscope attaches, in attach order.
func ebpfPrograms() []progDesc {
	return []progDesc{
		{obj: "syscalls", name: syscallsProgSysEnter, group: "raw_syscalls", event: "sys_enter", btf: true, required: true,
			fields: metrics.FSyscalls | metrics.FSyscallsByName, only: countAtEntry,
			lost: "used only when counting syscalls at entry; by default sys_exit counts them"},
		{obj: "syscalls", name: syscallsProgSysExit, group: "raw_syscalls", event: "sys_exit", btf: true, required: true,
			onReturn: metrics.FSyscalls | metrics.FSyscallsByName,
			fields: metrics.FDelivered | metrics.FReceived | metrics.FCopiedToUser | metrics.FCopiedFromUser |
				metrics.FMovedInKernel | metrics.FZerocopy | metrics.FCopyClasses},
		{obj: "syscalls", name: syscallsProgProcessExit, group: "sched", event: "sched_process_exit", btf: true, only: countAtReturn,
			lost: "exit and exit_group (which never return) are not counted"},
		{obj: "sched", name: schedProgSchedSwitch, group: "sched", event: "sched_switch", btf: true,
			fields: metrics.FCtxSwitches | metrics.FCPU,
			lost:   "context switches and cpu_ns are missing"},
		{obj: "faults", name: faultsProgPageFaultUser, group: "exceptions", event: "page_fault_user", btf: true,
			fields: metrics.FPageFaults, lost: "page_faults are missing"},
		{obj: "faults", name: faultsProgPageFaultKernel, group: "exceptions", event: "page_fault_kernel", btf: true,
			lost: "page_faults omit faults taken inside syscalls on user memory (copy_to/from_user), so they read below /proc minflt"},
		{obj: "faults", name: faultsProgFilemapFault, group: "filemap", event: "mm_filemap_fault", btf: true,
			fields: metrics.FFileFaults, lost: "file_faults are missing"},
		{obj: "faults", name: faultsProgFilemapMapPages, group: "filemap", event: "mm_filemap_map_pages", btf: true,
			fields: metrics.FFileFaults, lost: "file_faults are missing (fault-around pages cannot be counted)"},
		{obj: "faults", name: faultsProgFilemapAddToPageCache, group: "filemap", event: "mm_filemap_add_to_page_cache",
			fields: metrics.FPageCache, lost: "page_cache_misses are missing"},
		{obj: "faults", name: faultsProgBlockRqIssue, group: "block", event: "block_rq_issue",
			fields: metrics.FDiskRead, lost: "disk_read_bytes are missing"},
		{obj: "faults", name: faultsProgBlockRqComplete, group: "block", event: "block_rq_complete",
			fields: metrics.FDiskRead, lost: "disk_read_bytes are missing"},
		{obj: "follow", name: followProgFollowFork, group: "sched", event: "sched_process_fork", btf: true,
			lost: "child processes of watched processes are not followed, and a new process that reuses an exited watched process's id is counted"},
		{obj: "follow", name: followProgFollowExec, group: "sched", event: "sched_process_exec", btf: true,
			lost: "--comm finds new processes only at its rescan, once per interval"},
		{obj: "iouring", name: iouringProgUringSubmit, group: "io_uring", event: "io_uring_submit_req", btf: true,
			fields: metrics.FUringOps, lost: "io_uring_ops (operations by opcode) and bytes moved by io_uring operations are not counted"},
		{obj: "iouring", name: iouringProgUringComplete, group: "io_uring", event: "io_uring_complete", btf: true,
			fields: metrics.FUringOps, lost: "io_uring_ops (operations by opcode) and bytes moved by io_uring operations are not counted"},
		{obj: "iouring", name: iouringProgUringOverflow, group: "io_uring", event: "io_uring_cqe_overflow", btf: true,
			lost: "SEND_ZC notifications that overflowed the CQ ring are not counted (zerocopy_copied_bytes reads low)"},
	}
}

// ebpfProbe is the eBPF backend of Probe.
type ebpfProbe struct {
	mu       sync.Mutex
	closed   bool
	colls    []*ebpf.Collection
	links    []link.Link
	measured metrics.Field
	notes    []string
	// countOnExit: syscalls are counted as they return (sys_exit), not
	// as they are entered.
	countOnExit bool

	// Shared filter maps (owned by the syscalls collection).
	tgids, tids, filter, drops *ebpf.Map
	// Per-thread syscall counters (bpf/syscalls.bpf.c).
	slots *slotTable
	// Other counter maps; nil when their object did not load.
	uringCounts, uringOps, schedCounts, faultCounts *ebpf.Map
	// low: the low-cost mode (ebpf_lowcost.go); duty samples it.
	low  bool
	duty *dutyCycle
	// The following configuration (bpf/follow.bpf.c); nil when it did not load.
	follow    *ebpf.Map
	followCfg followFollowCfg
	// Final syscall counters of exited threads whose slots were recycled.
	exited map[int]exitedThread
	// Identities recorded in the kernel, for threads gone from /proc.
	kernelID map[int]kernelIdentity
	// Released threads' totals by process, and where each went
	// (ebpf_release.go); gen counts readings.
	goneProcs map[int]*goneProcess
	released  map[int]releasedThread
	gen       uint64

	// What userspace asked for, to keep watched_tgids consistent.
	procs    map[int]bool         // tgids watched whole
	byThread map[int]map[int]bool // tgid -> tids watched one by one
	cgroupID uint64
	info     map[int]threadInfo // tid -> identity, cached
}

type threadInfo struct {
	pid    int
	comm   string
	exited bool
}

// idLimit is the first id the filter bitmaps do not cover (PID_MAX_LIMIT
// in bpf/headers/common.h, read from the loaded map's size).
func (p *ebpfProbe) idLimit() int { return int(p.tids.MaxEntries()) * 64 }

// setTgidBit sets or clears a process's bit in watched_tgids: all (every
// thread) or some (listed threads only).
func (p *ebpfProbe) setTgidBit(tgid int, all, on bool) error {
	if tgid <= 0 || tgid >= p.idLimit() {
		return fmt.Errorf("process id %d outside 1..%d", tgid, p.idLimit()-1)
	}
	w := uint32(tgid / 64)
	bit := uint64(1) << (tgid % 64)
	var v syscallsTgidBits
	if err := p.tgids.Lookup(w, &v); err != nil {
		return fmt.Errorf("read watched_tgids word %d: %w", w, err)
	}
	field := &v.Some
	if all {
		field = &v.All
	}
	if on {
		*field |= bit
	} else {
		*field &^= bit
	}
	if err := p.tgids.Put(w, v); err != nil {
		return fmt.Errorf("update watched_tgids word %d: %w", w, err)
	}
	return nil
}

// setTidBit sets or clears a thread's bit in watched_tids.
func (p *ebpfProbe) setTidBit(tid int, on bool) error {
	if tid <= 0 || tid >= p.idLimit() {
		return fmt.Errorf("thread id %d outside 1..%d", tid, p.idLimit()-1)
	}
	w := uint32(tid / 64)
	var v uint64
	if err := p.tids.Lookup(w, &v); err != nil {
		return fmt.Errorf("read watched_tids word %d: %w", w, err)
	}
	if on {
		v |= uint64(1) << (tid % 64)
	} else {
		v &^= uint64(1) << (tid % 64)
	}
	if err := p.tids.Put(w, v); err != nil {
		return fmt.Errorf("update watched_tids word %d: %w", w, err)
	}
	return nil
}

// OpenEBPF loads copyscope's BPF objects and attaches their tracepoint
// programs. It needs CAP_BPF and CAP_PERFMON (root), tracefs and kernel BTF;
// it never uses kprobes or fentry. A required program that fails to load or
// attach is an error carrying the verifier log; an optional one degrades its
// metrics, which Notes explains. Nothing is counted until threads, processes
// or a cgroup are added. Every program is attached through a bpf_link, so the
// kernel detaches it when the process exits, however it exits.
func OpenEBPF(opts EBPFOptions) (Probe, error) {
	return openEBPF(opts, ebpfPrograms(), nil)
}

// openEBPF loads and attaches the given programs; edit, when not nil, may
// change each object's spec before it loads (tests use both to exercise
// the degraded and failing paths).
func openEBPF(opts EBPFOptions, descs []progDesc, edit func(obj string, spec *ebpf.CollectionSpec)) (*ebpfProbe, error) {
	p := &ebpfProbe{
		procs:    map[int]bool{},
		byThread: map[int]map[int]bool{},
		info:     map[int]threadInfo{},
		exited:   map[int]exitedThread{},
		kernelID: map[int]kernelIdentity{},
		measured: metrics.FAll,

		goneProcs: map[int]*goneProcess{},
		released:  map[int]releasedThread{},
	}
	if err := p.open(opts, descs, edit); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// open loads and attaches the probes in phases: choose the programs for
// the options, then per BPF object prepare its spec, load it, adopt its
// maps and attach its programs.
func (p *ebpfProbe) open(opts EBPFOptions, descs []progDesc, edit func(string, *ebpf.CollectionSpec)) error {
	if err := checkDuty(opts); err != nil {
		return err
	}
	order, byObj := p.plan(&opts, descs)
	for _, obj := range order {
		spec, err := p.prepare(obj, opts, edit)
		if err != nil {
			return err
		}
		coll, err := p.loadObject(obj, spec, byObj[obj])
		if err != nil {
			return err
		}
		if coll == nil {
			continue
		}
		p.colls = append(p.colls, coll)
		if err := p.adopt(obj, coll, opts); err != nil {
			return err
		}
		if err := p.attachAll(coll, byObj[obj]); err != nil {
			return err
		}
	}
	if p.duty != nil {
		return p.duty.start()
	}
	return nil
}

// checkDuty validates the sampling options.
func checkDuty(opts EBPFOptions) error {
	switch {
	case opts.Duty < 0 || opts.Duty > MaxDuty:
		return fmt.Errorf("duty %d: use 1 (always attached) to %d", opts.Duty, MaxDuty)
	case opts.Duty > 1 && !opts.LowCost:
		return errors.New("sampling (duty above 1) is a variant of the low-cost mode: the exact mode's syscall counts cannot be scaled")
	case opts.DutyPeriod < 0 || (opts.DutyPeriod > 0 && opts.DutyPeriod < 10*time.Millisecond*time.Duration(max(opts.Duty, 1))):
		return fmt.Errorf("duty period %v: use at least 10 ms per sampled window (%v for duty %d)", opts.DutyPeriod, 10*time.Millisecond*time.Duration(max(opts.Duty, 1)), opts.Duty)
	}
	return nil
}

// ebpfObjects are the embedded BPF objects by bpf2go name.
var ebpfObjects = map[string]func() (*ebpf.CollectionSpec, error){
	"syscalls": loadSyscalls, "sched": loadSched, "faults": loadFaults, "iouring": loadIouring,
	"follow": loadFollow, "lowcost": loadLowcost,
}

// plan chooses the programs the options ask for, grouped by object in load
// order, and sets the measured fields and notes that follow from them.
func (p *ebpfProbe) plan(opts *EBPFOptions, descs []progDesc) (order []string, byObj map[string][]progDesc) {
	descs = selectCost(opts.LowCost, descs)
	byObj = map[string][]progDesc{}
	p.countOnExit = !opts.CountAtEntry
	mode := countAtEntry
	if p.countOnExit {
		mode = countAtReturn
	}
	for _, d := range descs {
		if opts.SkipOptional && (d.obj == "faults" || d.obj == "iouring") {
			continue
		}
		d, used := d.forMode(mode)
		if !used {
			continue // the other counting mode's program
		}
		if _, ok := byObj[d.obj]; !ok {
			order = append(order, d.obj)
		}
		byObj[d.obj] = append(byObj[d.obj], d)
	}
	if opts.LowCost {
		p.low, p.measured = true, lowCostMeasured
		p.notes = append(p.notes, lowCostNote)
		if opts.Duty > 1 {
			p.duty = newDutyCycle(opts.Duty, opts.DutyPeriod)
		}
		// The syscalls object (process_exit, the filter and slot maps)
		// loads first: the others share its maps.
		order = slices.DeleteFunc(order, func(o string) bool { return o == "syscalls" })
		order = append([]string{"syscalls"}, order...)
		p.countOnExit = false // no syscall is counted
	}
	if opts.SkipOptional {
		p.measured &^= metrics.FPageFaults | metrics.FFileFaults | metrics.FPageCache | metrics.FDiskRead | metrics.FUringOps
		p.notes = append(p.notes, "optional fault, page cache, disk and io_uring programs skipped on request")
	}
	return order, byObj
}

// prepare reads one embedded object's spec and sets it up for loading:
// slot map sizes, the caller's edit, the counting mode.
func (p *ebpfProbe) prepare(obj string, opts EBPFOptions, edit func(string, *ebpf.CollectionSpec)) (*ebpf.CollectionSpec, error) {
	spec, err := ebpfObjects[obj]()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object %s: %w (run make generate)", obj, err)
	}
	if err := sizeSlotMaps(obj, spec, opts.MaxThreads); err != nil {
		return nil, err
	}
	if edit != nil {
		edit(obj, spec)
	}
	if v := spec.Variables[lowcostVarWeight]; v != nil && opts.Duty > 1 {
		if err := v.Set(uint64(opts.Duty)); err != nil {
			return nil, fmt.Errorf("set the sampling weight in BPF object %s: %w", obj, err)
		}
	}
	for name, on := range map[string]bool{syscallsVarCountOnExit: p.countOnExit,
		syscallsVarTrackPorts: opts.TrackPorts, syscallsVarFilterPorts: len(opts.Ports) > 0} {
		if v := spec.Variables[name]; v != nil {
			var b uint8
			if on {
				b = 1
			}
			if err := v.Set(b); err != nil {
				return nil, fmt.Errorf("set %s in BPF object %s: %w", name, obj, err)
			}
		}
	}
	return spec, nil
}

// adopt takes the maps the probe reads and writes from a loaded object.
func (p *ebpfProbe) adopt(obj string, coll *ebpf.Collection, opts EBPFOptions) error {
	if obj == "syscalls" {
		p.tgids = coll.Maps[syscallsMapWatchedTgids]
		p.tids = coll.Maps[syscallsMapWatchedTids]
		p.filter = coll.Maps[syscallsMapFilter]
		p.drops = coll.Maps[syscallsMapDrops]
		var err error
		if p.slots, err = newSlotTable(coll); err != nil {
			return err
		}
		if err := setPorts(coll.Maps[syscallsMapPorts], opts.Ports); err != nil {
			return err
		}
	}
	if m := coll.Maps[iouringMapUringCounts]; m != nil {
		p.uringCounts = m
		p.uringOps = coll.Maps[iouringMapUringOps]
	}
	if m := coll.Maps[schedMapSchedCounts]; m != nil {
		p.schedCounts = m
	}
	if m := coll.Maps[faultsMapFaultCounts]; m != nil {
		p.faultCounts = m
	}
	if p.duty != nil && obj == "lowcost" {
		p.duty.window, p.duty.counting = coll.Variables[lowcostVarWindow], coll.Variables[lowcostVarCounting]
	}
	if m := coll.Maps[followMapFollow]; m != nil {
		p.follow = m
		if !opts.NoFollowChildren {
			p.followCfg.Children = 1
		}
		if err := m.Put(uint32(0), p.followCfg); err != nil {
			return fmt.Errorf("configure process following: %w", err)
		}
	}
	return nil
}

// attachAll attaches an object's programs; a failing optional one is
// noted and its fields dropped, a failing required one is an error.
func (p *ebpfProbe) attachAll(coll *ebpf.Collection, descs []progDesc) error {
	for _, d := range descs {
		prog := coll.Programs[d.name]
		if prog == nil {
			continue // dropped at load; already noted
		}
		l, err := attach(d, prog)
		if err != nil {
			if d.required {
				return fmt.Errorf("attach required program %s to %s: %w (doctor explains what this kernel allows)", d.name, d.where(), err)
			}
			p.degrade(d, fmt.Sprintf("attach %s: %v", d.where(), err))
			continue
		}
		if p.duty != nil && d.obj == "lowcost" {
			p.duty.adopt(prog, l)
			continue
		}
		p.links = append(p.links, l)
	}
	return nil
}

func (d progDesc) where() string {
	if d.btf {
		return "tp_btf/" + d.event
	}
	return "tracepoint/" + d.group + "/" + d.event
}

func (p *ebpfProbe) degrade(d progDesc, why string) {
	p.measured &^= d.fields
	p.notes = append(p.notes, fmt.Sprintf("%s: %s; %s", d.name, why, d.lost))
}

// loadObject loads one BPF object with the shared filter maps of the first
// one. When the whole object does not load, each program is tried alone:
// a failing required program is an error with its verifier log, a failing
// optional one is removed from the spec and noted.
func (p *ebpfProbe) loadObject(obj string, spec *ebpf.CollectionSpec, descs []progDesc) (*ebpf.Collection, error) {
	keep := map[string]bool{}
	for _, d := range descs {
		keep[d.name] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	opts := ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	if p.tgids != nil {
		shared := map[string]*ebpf.Map{
			syscallsMapWatchedTgids: p.tgids, syscallsMapWatchedTids: p.tids, syscallsMapFilter: p.filter, syscallsMapDrops: p.drops,
		}
		if p.slots != nil {
			for name, m := range p.slots.maps() {
				shared[name] = m
			}
		}
		for name, m := range shared {
			if _, ok := spec.Maps[name]; ok {
				opts.MapReplacements[name] = m
			}
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err == nil {
		return coll, nil
	}
	for _, d := range descs {
		one := spec.Copy()
		for name := range one.Programs {
			if name != d.name {
				delete(one.Programs, name)
			}
		}
		c, perr := ebpf.NewCollectionWithOptions(one, opts)
		if perr == nil {
			c.Close()
			continue
		}
		if d.required {
			var ve *ebpf.VerifierError
			if errors.As(perr, &ve) {
				return nil, fmt.Errorf("load required BPF program %s (%s): the kernel's verifier rejected it (a copyscope bug or a kernel it does not support; please report it with this log):\n%+v", d.name, obj, ve)
			}
			return nil, fmt.Errorf("load required BPF program %s (%s): %w (needs root with CAP_BPF and CAP_PERFMON and kernel BTF; run copyscope doctor)", d.name, obj, perr)
		}
		p.degrade(d, "load: "+ErrorSummary(perr))
		delete(spec.Programs, d.name)
	}
	if len(spec.Programs) == 0 {
		return nil, nil
	}
	coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("load BPF object %s: %+v", obj, err)
	}
	return coll, nil
}

func attach(d progDesc, prog *ebpf.Program) (link.Link, error) {
	if d.btf {
		return link.AttachTracing(link.TracingOptions{Program: prog})
	}
	return link.Tracepoint(d.group, d.event, prog, nil)
}

// Mode reports ModeEBPF (exact counts), or ModeEBPFLow in the low-cost mode.
func (p *ebpfProbe) Mode() metrics.Mode {
	if p.low {
		return metrics.ModeEBPFLow
	}
	return metrics.ModeEBPF
}

// Measured is every metric whose programs are attached.
func (p *ebpfProbe) Measured() metrics.Field {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.measured
}

// Notes lists degraded programs and events the kernel side could not count.
func (p *ebpfProbe) Notes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]string(nil), p.notes...)
	if p.duty != nil {
		out = append(out, p.duty.note())
	}
	if p.drops != nil && !p.closed {
		var full, bad []uint64
		if p.drops.Lookup(syscallsDropReasonDROP_MAP_FULL, &full) == nil && sum(full) > 0 {
			out = append(out, fmt.Sprintf("%d events not counted: a counters map was full (more than %d threads at once)", sum(full), p.slots.n))
		}
		if p.drops.Lookup(syscallsDropReasonDROP_READ, &bad) == nil && sum(bad) > 0 {
			out = append(out, fmt.Sprintf("%d kernel or user memory reads failed: those bytes are classed as other or not counted", sum(bad)))
		}
		var highTid []uint64
		if p.drops.Lookup(syscallsDropReasonDROP_TID, &highTid) == nil && sum(highTid) > 0 {
			out = append(out, fmt.Sprintf("%d syscalls of threads with ids at or above %d (pid_max when the probes loaded, since raised) not counted: restart copyscope", sum(highTid), p.slots.links.MaxEntries()))
		}
		var reused []uint64
		if p.drops.Lookup(syscallsDropReasonDROP_REUSED, &reused) == nil && sum(reused) > 0 {
			out = append(out, fmt.Sprintf("%d context-switch events of new threads not counted: their thread id was reused before the previous owner's final counts were read (more than pid_max threads created within one interval; read more often)", sum(reused)))
		}
		var mmsg []uint64
		if p.drops.Lookup(syscallsDropReasonDROP_MMSG, &mmsg) == nil && sum(mmsg) > 0 {
			out = append(out, fmt.Sprintf("%d sendmmsg/recvmmsg calls moved more than %d messages: bytes past the %dth message are not counted", sum(mmsg), syscallsMmsgLimitsMAX_MMSG, syscallsMmsgLimitsMAX_MMSG))
		}
		// The kernel skips a program that fires while it is already
		// running on the same CPU (for example from an interrupt).
		for _, c := range p.colls {
			for name, prog := range c.Programs {
				if st, err := prog.Stats(); err == nil && st.RecursionMisses > 0 {
					out = append(out, fmt.Sprintf("%s: %d events (of any thread, watched or not) skipped by the kernel because a BPF program was already running on that CPU: %s",
						name, st.RecursionMisses, affected(name)))
				}
			}
		}
	}
	return out
}

// sub is a - b, or 0 when a counter reads below its base.
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func sum(v []uint64) uint64 {
	var t uint64
	for _, x := range v {
		t += x
	}
	return t
}

// AddThreads counts the given threads (and no other thread of their
// processes). A thread that does not exist is an error.
func (p *ebpfProbe) AddThreads(tids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add threads: probe is closed")
	}
	for _, tid := range tids {
		ti, err := readThreadInfo(tid)
		if err != nil {
			return fmt.Errorf("watch thread %d: %w (is the thread alive?)", tid, err)
		}
		if ti.exited {
			return fmt.Errorf("watch thread %d: it has exited", tid)
		}
		p.info[tid] = ti
		if err := p.setTidBit(tid, true); err != nil {
			return fmt.Errorf("watch thread %d: %w", tid, err)
		}
		if p.byThread[ti.pid] == nil {
			p.byThread[ti.pid] = map[int]bool{}
		}
		p.byThread[ti.pid][tid] = true
		if err := p.setTgidBit(ti.pid, false, true); err != nil {
			return fmt.Errorf("watch thread %d of process %d: %w", tid, ti.pid, err)
		}
	}
	return nil
}

// RemoveThreads stops counting threads added with AddThreads and forgets
// their counters. Threads of a process added with AddProcesses stay
// counted while their process is watched.
func (p *ebpfProbe) RemoveThreads(tids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("remove threads: probe is closed")
	}
	var errs []error
	gone := map[uint32]bool{}
	for _, tid := range tids {
		pid := p.info[tid].pid
		delete(p.byThread[pid], tid)
		if err := p.setTidBit(tid, false); err != nil {
			errs = append(errs, fmt.Errorf("unwatch thread %d: %w", tid, err))
		}
		if len(p.byThread[pid]) == 0 && pid > 0 {
			delete(p.byThread, pid)
			if err := p.setTgidBit(pid, false, false); err != nil {
				errs = append(errs, fmt.Errorf("unwatch process %d of thread %d: %w", pid, tid, err))
			}
		}
		if p.procs[pid] {
			continue
		}
		delete(p.info, tid)
		gone[uint32(tid)] = true
	}
	errs = append(errs, p.forget(gone))
	return errors.Join(errs...)
}

// forget deletes the counters of the given tids from every counters map.
func (p *ebpfProbe) forget(tids map[uint32]bool) error {
	if len(tids) == 0 {
		return nil
	}
	errs := []error{p.forgetSlots(tids), p.forgetUringOps(tids)}
	for _, m := range []*ebpf.Map{p.uringCounts, p.schedCounts, p.faultCounts} {
		if m == nil {
			continue
		}
		for tid := range tids {
			if err := m.Delete(tid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("forget thread %d in %s: %w", tid, m, err))
			}
		}
	}
	for tid := range tids {
		delete(p.kernelID, int(tid))
	}
	return errors.Join(errs...)
}

// AddProcesses counts every thread of the given processes, present and
// future. A pid that is not a live process is an error.
func (p *ebpfProbe) AddProcesses(pids ...int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add processes: probe is closed")
	}
	for _, pid := range pids {
		ti, err := readThreadInfo(pid)
		if err != nil {
			return fmt.Errorf("watch process %d: %w (is the pid right and the process alive?)", pid, err)
		}
		if ti.exited {
			return fmt.Errorf("watch process %d: it has exited (a zombie waiting for its parent)", pid)
		}
		if ti.pid != pid {
			return fmt.Errorf("watch process %d: %d is a thread of process %d, not a process (use --pid %d or watch the thread)", pid, pid, ti.pid, ti.pid)
		}
		if err := p.setTgidBit(pid, true, true); err != nil {
			return fmt.Errorf("watch process %d: %w", pid, err)
		}
		p.procs[pid] = true
	}
	return nil
}

// AddCgroup counts every thread in one cgroup v2 directory and in its
// descendant cgroups, nested at any depth (a systemd slice, a Kubernetes
// pod), for example /sys/fs/cgroup/system.slice. One cgroup at a time.
func (p *ebpfProbe) AddCgroup(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("add cgroup: probe is closed")
	}
	id, level, err := cgroupIDLevel(path)
	if err != nil {
		return err
	}
	if p.cgroupID != 0 && p.cgroupID != id {
		return fmt.Errorf("watch cgroup %s: already watching another cgroup (id %d); one cgroup per probe", path, p.cgroupID)
	}
	cfg := syscallsFilterCfg{CgroupId: id, CgroupLevel: level}
	if err := p.filter.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("watch cgroup %s: update filter map: %w", path, err)
	}
	p.cgroupID = id
	return nil
}

// cgroupIDLevel returns a cgroup v2 directory's id (its inode number, the
// kernel's cgroup id) and its depth below the root of the cgroup2 mount,
// which the kernel side compares with the same-depth ancestor of each
// thread's cgroup.
func cgroupIDLevel(path string) (id uint64, level uint32, err error) {
	mount := Cgroup2Mount()
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, 0, fmt.Errorf("watch cgroup %s: %w (give a directory under the cgroup2 mount %s)", path, err, mount)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, 0, fmt.Errorf("watch cgroup %s: not on a cgroup v2 filesystem (give a directory under the cgroup2 mount %s)", path, mount)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("watch cgroup %s: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return 0, 0, fmt.Errorf("watch cgroup %s: %w", path, err)
	}
	rel, err := filepath.Rel(mount, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return 0, 0, fmt.Errorf("watch cgroup %s: not under the cgroup2 mount %s (give a directory below it)", path, mount)
	}
	if rel != "." {
		level = uint32(strings.Count(rel, "/") + 1)
	}
	return st.Ino, level, nil
}

// Read sums every CPU's counters into one Counters per thread. A thread on
// CPU at this instant has its running slice added to cpu_ns.
func (p *ebpfProbe) Read() (Reading, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Reading{}, errors.New("read probe: probe is closed")
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Reading{}, fmt.Errorf("read monotonic clock: %w", err)
	}
	now := uint64(ts.Nano())
	r := Reading{Time: time.Now(), Mode: p.Mode(), Threads: map[int]Thread{}}
	// Map values are read into locals, then stored back: a map of structs
	// cannot be updated in place.
	update := func(tid uint32, f func(c *metrics.Counters)) {
		t, ok := r.Threads[int(tid)]
		if !ok {
			t = Thread{TID: int(tid), Counters: metrics.Counters{Measured: p.measured}}
		}
		f(&t.Counters)
		r.Threads[int(tid)] = t
	}
	if err := p.harvest(update); err != nil {
		return Reading{}, fmt.Errorf("read thread_stats: %w", err)
	}
	schedLive, err := p.readSched(now, update)
	if err != nil {
		return Reading{}, err
	}
	if err := readPerCPU(p, p.uringCounts, update, addUring); err != nil {
		return Reading{}, err
	}
	if err := p.readUringOps(update); err != nil {
		return Reading{}, err
	}
	if err := readPerCPU(p, p.faultCounts, update, addFaults); err != nil {
		return Reading{}, err
	}
	p.addExited(&r, schedLive, update)
	// Explicitly watched threads appear even before their first event.
	for _, tids := range p.byThread {
		for tid := range tids {
			update(uint32(tid), func(*metrics.Counters) {})
		}
	}
	for tid, t := range r.Threads {
		if tid < 0 {
			continue // a process's released threads
		}
		ti := p.identify(tid)
		t.PID, t.Comm, t.Exited = ti.pid, ti.comm, ti.exited
		t.Port = p.kernelID[tid].port
		if e, ok := p.exited[tid]; ok && e.tgid > 0 {
			// The kernel's record of who it was: /proc may already show
			// a new thread that reuses the id.
			t.PID, t.Comm, t.Exited, t.Port = e.tgid, e.comm, true, e.port
		}
		r.Threads[tid] = t
	}
	return r, nil
}

// eachPerCPU calls fn with every key of a per-CPU map and its values, one
// per possible CPU, fetching up to 512 keys per syscall (a Kafka broker's
// few hundred threads fit in one call).
// Kernels without batch operations are read key by key.
func eachPerCPU[K, V any](m *ebpf.Map, fn func(K, []V)) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible CPUs: %w", err)
	}
	const batch = 512
	keys := make([]K, batch)
	vals := make([]V, batch*ncpu)
	var cursor ebpf.MapBatchCursor
	for i := 0; i < 1<<20; i++ { // bounded: 512M keys, far beyond any map here
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for j := 0; j < n; j++ {
			fn(keys[j], vals[j*ncpu:(j+1)*ncpu])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && i == 0:
			var k K
			var v []V
			it := m.Iterate()
			for it.Next(&k, &v) {
				fn(k, v)
			}
			return it.Err()
		case err != nil:
			return err
		}
	}
	return fmt.Errorf("map %v: batch lookup did not finish", m)
}

// identify returns a thread's process and name, from /proc while it lives
// and from the last sight (ours or the kernel side's) once it has exited.
func (p *ebpfProbe) identify(tid int) threadInfo {
	old, known := p.info[tid]
	if known && old.exited {
		if kid, ok := p.kernelID[tid]; ok && old.pid == 0 {
			old.pid, old.comm = kid.tgid, kid.comm
			p.info[tid] = old
		}
		return old
	}
	ti, err := readThreadInfo(tid)
	if err == nil && ti.exited {
		p.info[tid] = ti
		return ti
	}
	if err != nil {
		old.exited = true
		if kid, ok := p.kernelID[tid]; ok {
			if old.pid == 0 {
				old.pid = kid.tgid
			}
			if old.comm == "" {
				old.comm = kid.comm
			}
		}
		p.info[tid] = old
		return old
	}
	p.info[tid] = ti
	return ti
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// readThreadInfo reads Name, State and Tgid from /proc/<tid>/status (a
// path that works for any thread id, not only process leaders).
func readThreadInfo(tid int) (threadInfo, error) {
	if tid <= 0 {
		return threadInfo{}, fmt.Errorf("invalid thread id %d", tid)
	}
	st, err := procfs.AnyTask(tid).Status()
	if err != nil {
		return threadInfo{}, err
	}
	return threadInfo{pid: st.Tgid, comm: st.Name, exited: st.Exited()}, nil
}

// Close detaches every program and frees every map. It is safe to call
// more than once.
func (p *ebpfProbe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.duty != nil {
		p.duty.close()
	}
	// Each detach waits for an RCU grace period in the kernel; doing them
	// one after another made Close take 0.5-0.7 s (closeLinks detaches
	// concurrently).
	err := closeLinks(p.links)
	p.links = nil
	for _, c := range p.colls {
		c.Close()
	}
	p.colls = nil
	return err
}

// FollowComm watches, from its first syscall, every process that execs
// into a program whose command name (cut at 15 characters, as the kernel
// keeps it) is name. It is done in the kernel at exec; it does not look
// for processes already running (AddProcesses does).
func (p *ebpfProbe) FollowComm(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("follow command name: probe is closed")
	}
	if p.follow == nil {
		return errors.New("follow command name: the follow programs did not load (see Notes)")
	}
	if name == "" {
		return errors.New("follow command name: empty name")
	}
	cfg := p.followCfg
	cfg.ByComm = 1
	cfg.Comm = [16]int8{}
	for i := 0; i < len(name) && i < 15; i++ {
		cfg.Comm[i] = int8(name[i])
	}
	if err := p.follow.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("follow command name %q: update the follow map: %w", name, err)
	}
	p.followCfg = cfg
	return nil
}

// affected says which metrics read low when a program misses events.
func affected(prog string) string {
	for _, d := range ebpfPrograms() {
		if d.name != prog {
			continue
		}
		var names []string
		for _, mf := range metricFields() {
			if d.fields&mf.field != 0 {
				names = append(names, mf.name)
			}
		}
		if len(names) > 0 {
			return strings.Join(names, ", ") + " may read low"
		}
		if d.lost != "" {
			return "what it adds may be short (without it: " + d.lost + ")"
		}
	}
	return "what it counts may read low"
}

// setPorts sets the ports' bits in the kernel's port bitmap.
func setPorts(m *ebpf.Map, ports []int) error {
	words := map[uint32]uint64{}
	for _, port := range ports {
		if port <= 0 || port > 65535 {
			return fmt.Errorf("port %d outside 1..65535", port)
		}
		words[uint32(port/64)] |= 1 << (port % 64)
	}
	for w, bits := range words {
		if err := m.Put(w, bits); err != nil {
			return fmt.Errorf("set ports %d..%d in the port filter: %w", w*64, w*64+63, err)
		}
	}
	return nil
}
