package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
)

// watchFlags are copyscope watch's options.
type watchFlags struct {
	pids     []int
	comm     string
	cgroup   string
	by       string
	interval time.Duration
	duration time.Duration
	json     bool
	mode     string
	prom     promFlags
	// followChildren watches new child processes of watched processes.
	followChildren bool
	// ports limits the socket bytes counted to these local or remote ports.
	ports      []int
	cost       string
	duty       int
	dutyPeriod time.Duration
}

func newWatchCmd() *cobra.Command {
	var f watchFlags
	cmd := &cobra.Command{
		Use:   "watch --pid PID... | --comm NAME | --cgroup PATH",
		Short: "Attach to running processes and show what their data movement costs",
		Long: `watch counts, per interval, what the kernel does for running processes:
syscalls, user/kernel transitions, context switches, page faults, CPU time and,
in eBPF mode, bytes delivered to sockets and bytes copied by the CPU, with a
verdict per subject naming its transfer style.

--mode auto uses eBPF when permitted (root) and falls back to /proc estimates,
saying so on stderr. New threads of watched processes are picked up. In eBPF
mode, following happens in the kernel, from the first syscall: a watched
process's new child processes (a daemon that forks per connection; turn it
off with --follow-children=false), processes that exec into the --comm name,
and every cgroup below --cgroup (a systemd slice, a Kubernetes pod). A
process that exits is reported and the rest go on; when all are gone watch
exits 0, after one summary record per subject over the whole run. Output:
the live TUI on a terminal, else one table row per subject per interval,
or JSON lines with --json (the metrics-contract record plus "verdict"). /proc figures are marked "~" (estimates). --prometheus ADDR also
serves the counters at http://ADDR/metrics (loopback unless ADDR names
another host; see the README for the metric names). --cost low attaches no
syscall tracepoint (for long runs beside production servers): transfer
style and copies per byte from socket and page-cache events, records
marked estimates, no syscall counts or faults. --duty N samples it: the
byte-counting programs are attached for 1/N of every --duty-period at a
random offset and count each byte N times (estimates, about 1/N of the
cost; context switches and CPU time stay exact).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWatch(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntSliceVar(&f.pids, "pid", nil, "process ids to watch (repeat or comma-separate)")
	fl.StringVar(&f.comm, "comm", "", "watch every process with this command name: running ones, and (eBPF mode) new ones from their exec")
	fl.StringVar(&f.cgroup, "cgroup", "", "watch every thread of a cgroup v2 directory and its descendant cgroups (absolute or relative to the cgroup2 mount)")
	fl.BoolVar(&f.followChildren, "follow-children", true, "watch new child processes of watched processes from their first syscall (eBPF mode)")
	fl.StringVar(&f.by, "by", "process", "group threads by thread, process, comm or port (the local port of the socket each thread first moved data on; eBPF mode)")
	fl.IntSliceVar(&f.ports, "port", nil, "count socket bytes only on sockets with this local or remote port (repeat or comma-separate; eBPF mode)")
	fl.DurationVar(&f.interval, "interval", time.Second, "sampling interval")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until interrupted or every process is gone)")
	fl.BoolVar(&f.json, "json", false, "print JSON lines (one object per subject per interval)")
	fl.StringVar(&f.mode, "mode", "auto", "probe backend: auto, ebpf (exact, root) or proc (estimates, no privileges)")
	f.prom.register(fl)
	fl.StringVar(&f.cost, "cost", "exact", costHelp)
	fl.IntVar(&f.duty, "duty", 1, fmt.Sprintf("with --cost low: attach the byte-counting programs for 1/N of every --duty-period and scale their counts by N (1: always attached; at most %d)", probes.MaxDuty))
	fl.DurationVar(&f.dutyPeriod, "duty-period", probes.DefaultDutyPeriod, "with --duty: the sampling period (one window of period/N in each, at a random offset)")
	return cmd
}

// watchRecord is one JSON line: the metrics-contract record plus its
// verdicts, both directions in one line and each on its own (absent when
// the subject moved nothing that way).
type watchRecord struct {
	metrics.Record
	Verdict         string `json:"verdict"`
	VerdictSends    string `json:"verdict_sends,omitempty"`
	VerdictReceives string `json:"verdict_receives,omitempty"`
}

func newWatchRecord(r metrics.Record) watchRecord {
	return watchRecord{Record: r, Verdict: metrics.Verdict(r),
		VerdictSends: metrics.SendVerdict(r), VerdictReceives: metrics.ReceiveVerdict(r)}
}

// openWatchProbe opens the backend for mode; auto falls back to /proc with
// a warning on stderr.
func openWatchProbe(mode string, opts probes.EBPFOptions, stderr io.Writer) (probes.Probe, error) {
	switch mode {
	case "ebpf":
		p, err := probes.OpenEBPF(opts)
		if err != nil {
			return nil, fmt.Errorf("eBPF probes: %w (run as root, see copyscope doctor, or use --mode proc for estimates)", err)
		}
		return p, nil
	case "proc":
		return probes.OpenProc()
	case "auto", "":
		p, err := probes.OpenEBPF(opts)
		if err == nil {
			return p, nil
		}
		fmt.Fprintf(stderr, "copyscope: warning: eBPF probes not available (%s); falling back to /proc estimates (run as root for exact counts; copyscope doctor explains)\n", probes.ErrorSummary(err))
		return probes.OpenProc()
	}
	return nil, fmt.Errorf("unknown --mode %q (use auto, ebpf or proc)", mode)
}

// watchTargets validates the flags and finds the processes to watch now,
// and the cgroup directory (resolved against the cgroup2 mount).
func watchTargets(f watchFlags) (pids []int, cgroupDir string, err error) {
	if len(f.pids) == 0 && f.comm == "" && f.cgroup == "" {
		return nil, "", errors.New("watch what? give --pid PID, --comm NAME or --cgroup PATH")
	}
	if f.interval < 10*time.Millisecond {
		return nil, "", fmt.Errorf("--interval %v is too short (use 10ms or more, e.g. 1s)", f.interval)
	}
	seen := map[int]bool{}
	for _, pid := range f.pids {
		if err := procfs.CheckProcess(pid); err != nil {
			return nil, "", err
		}
		if !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	if f.comm != "" {
		found, err := procfs.ProcessesNamed(f.comm)
		if err != nil {
			return nil, "", err
		}
		if len(found) == 0 {
			return nil, "", fmt.Errorf("no running process is named %q (compare with ps -e -o comm; names are cut at 15 characters)", f.comm)
		}
		for _, pid := range found {
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	cgroupDir = f.cgroup
	if cgroupDir != "" && !filepath.IsAbs(cgroupDir) {
		cgroupDir = filepath.Join(probes.Cgroup2Mount(), cgroupDir)
	}
	return pids, cgroupDir, nil
}

// runWatch runs copyscope watch in its phases: find the targets and open
// and attach the probe, pick the sink, sample until done, then the run's
// summary.
func runWatch(cmd *cobra.Command, f watchFlags) error {
	out := cmd.OutOrStdout()
	w := &watchRun{f: f, log: &watchLog{stderr: cmd.ErrOrStderr()}}
	if err := w.open(); err != nil {
		if w.p != nil {
			w.p.Close()
		}
		return err
	}
	defer w.p.Close()

	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration+f.interval)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sink := newWatchSink(ctx, cancel, out, f.json)
	_, w.log.hold = sink.(*tuiSink)

	exp, err := startExporter(f.prom, w.p, string(w.by), f.duty, w.log.say)
	if err != nil {
		sink.close()
		w.log.release()
		return err
	}
	defer exp.close()
	w.start = time.Now()
	err = probes.NewSampler(w.p, w.group, f.interval).Run(ctx, func(prev, cur metrics.Snapshot, recs []metrics.Record) error {
		return w.interval(ctx, sink, exp, prev, cur, recs)
	})
	if cerr := sink.close(); cerr != nil && err == nil {
		err = cerr
	}
	w.log.release()
	if err == nil && w.last.Subjects != nil {
		err = sink.totals(activeRecords(metrics.Totals(w.first, w.last)))
	}
	if cerr := w.p.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close probes: %w", cerr)
	}
	return err
}

// watchRun is one run of copyscope watch: its probe, the processes it
// watches and what it has seen.
type watchRun struct {
	f         watchFlags
	log       *watchLog
	by        probes.Grouping
	p         probes.Probe
	g         *probes.Grouper
	watched   map[int]bool // live pids, from --pid and --comm
	cgroupDir string
	start     time.Time
	// first and last snapshot, for the summary over the whole run.
	first, last metrics.Snapshot
}

// open checks the flags, finds the targets, opens the probe and attaches
// it to them.
func (w *watchRun) open() error {
	var err error
	if w.by, err = probes.ParseGrouping(w.f.by); err != nil {
		return fmt.Errorf("--by: %w", err)
	}
	pids, cgroupDir, err := watchTargets(w.f)
	if err != nil {
		return err
	}
	opts, err := costOptions(w.f.cost, w.f.mode, w.f.duty, w.f.dutyPeriod)
	if err != nil {
		return err
	}
	opts.NoFollowChildren = !w.f.followChildren
	opts.Ports, opts.TrackPorts = w.f.ports, w.by == probes.ByPort
	if w.p, err = openWatchProbe(w.f.mode, opts, w.log.stderr); err != nil {
		return err
	}
	if w.p.Mode() != metrics.ModeEBPF && (len(w.f.ports) > 0 || w.by == probes.ByPort) {
		return errors.New("--port and --by port need eBPF mode (sockets are seen in the kernel; run as root, see copyscope doctor)")
	}
	w.g, w.watched, w.cgroupDir = probes.NewGrouper(w.by), map[int]bool{}, cgroupDir
	for _, pid := range pids {
		if err := w.p.AddProcesses(pid); err != nil {
			if procfs.Process(pid).Alive() {
				return err
			}
			return fmt.Errorf("no such process: %d (it exited before watch could attach)", pid)
		}
		w.watched[pid] = true
	}
	if cgroupDir != "" {
		if err := w.p.AddCgroup(cgroupDir); err != nil {
			return err
		}
	}
	what, err := watchFollow(w.p, w.f, len(w.watched), cgroupDir)
	if err != nil {
		return err
	}
	w.log.notes(w.p.Notes())
	w.log.say("copyscope: watching %s by %s every %v (mode %s)\n", what, w.by, w.f.interval, w.p.Mode())
	return nil
}

// group sums a reading into subjects. A watched process that made no
// syscall yet has no thread in an eBPF reading: it gets an empty leader so
// it shows as a row from the start.
func (w *watchRun) group(r probes.Reading) metrics.Snapshot {
	for pid := range w.watched {
		if _, ok := r.Threads[pid]; ok || r.Threads == nil {
			continue
		}
		comm, err := procfs.Process(pid).Comm()
		if err != nil {
			continue
		}
		r.Threads[pid] = probes.Thread{TID: pid, PID: pid, Comm: comm,
			Counters: metrics.Counters{Measured: w.p.Measured()}}
	}
	return w.g.Snapshot(r)
}

// interval handles one sampled interval: the records shown go to the
// exporter and the sink, then the watched processes are brought up to
// date. It returns probes.ErrStopSampling when watch is done.
func (w *watchRun) interval(ctx context.Context, sink watchSink, exp *exporter, prev, cur metrics.Snapshot, recs []metrics.Record) error {
	if w.first.Subjects == nil {
		w.first = prev
	}
	w.last = cur
	// A subject whose threads have all exited is shown for the interval
	// it ended in, then no more.
	shown := recs[:0:0]
	live := false // any subject with a live thread (followed children too)
	for _, r := range recs {
		l := w.g.Live(metrics.Subject{Kind: r.Kind, Name: r.Subject})
		live = live || l
		if l || watchActive(r) {
			shown = append(shown, r)
		}
	}
	exp.update(cur, shown)
	if err := sink.send(ctx, shown); err != nil {
		return err
	}
	w.log.notes(w.p.Notes())
	w.track()
	if len(w.watched) == 0 && w.cgroupDir == "" && !live {
		w.log.say("copyscope: every watched process has exited\n")
		return probes.ErrStopSampling
	}
	if w.f.duration > 0 && time.Since(w.start) >= w.f.duration-w.f.interval/4 {
		return probes.ErrStopSampling
	}
	return nil
}

// track reports processes that went away and rescans --comm for new ones.
func (w *watchRun) track() {
	for pid := range w.watched {
		if !procfs.Process(pid).Alive() {
			w.log.say("copyscope: pid %d exited\n", pid)
			delete(w.watched, pid)
		}
	}
	if w.f.comm == "" {
		return
	}
	found, _ := procfs.ProcessesNamed(w.f.comm) // a failed rescan finds nothing new
	for _, pid := range found {
		if w.watched[pid] {
			continue
		}
		if err := w.p.AddProcesses(pid); err == nil {
			w.watched[pid] = true
			w.log.say("copyscope: watching new %s process %d\n", w.f.comm, pid)
		}
	}
}

// activeRecords keeps the records that show any activity.
func activeRecords(recs []metrics.Record) []metrics.Record {
	out := recs[:0:0]
	for _, r := range recs {
		if watchActive(r) {
			out = append(out, r)
		}
	}
	return out
}

// watchFollow sets up in-kernel following of new processes by name (eBPF
// mode) and says, for the start-up message, what is watched.
func watchFollow(p probes.Probe, f watchFlags, procs int, cgroupDir string) (string, error) {
	follower, inKernel := p.(interface{ FollowComm(string) error })
	if f.comm != "" && inKernel {
		if err := follower.FollowComm(f.comm); err != nil {
			return "", fmt.Errorf("--comm %s: %w", f.comm, err)
		}
	}
	var what []string
	if procs > 0 {
		s := fmt.Sprintf("%d process(es)", procs)
		switch {
		case !inKernel:
			s += " (children not followed in proc mode)"
		case f.followChildren:
			s += " and their new child processes"
		}
		what = append(what, s)
	}
	if f.comm != "" && inKernel {
		what = append(what, "new "+f.comm+" processes from their exec")
	}
	if cgroupDir != "" {
		what = append(what, "cgroup "+cgroupDir+" with its descendant cgroups")
	}
	if len(f.ports) > 0 {
		what = append(what, fmt.Sprintf("socket bytes on ports %v only", f.ports))
	}
	return strings.Join(what, " and "), nil
}

// watchActive reports whether a record shows any activity.
func watchActive(r metrics.Record) bool {
	nz := func(p *uint64) bool { return p != nil && *p > 0 }
	return nz(r.Syscalls) || nz(r.CPUNs) || nz(r.DeliveredBytes) || nz(r.ReceivedBytes) || nz(r.PageFaults)
}

// watchColumn is one table column: title and width.
type watchColumn struct {
	title string
	width int
}

// watchColumns are the table's columns.
func watchColumns() []watchColumn {
	return []watchColumn{
		{"TIME", 8}, {"MODE", 6}, {"SUBJECT", 24}, {"DELIVERED/s", 11}, {"RECEIVED/s", 10}, {"SYSCALLS/s", 10}, {"MODESW/s", 9},
		{"CTX vol/inv/s", 15}, {"FAULTS/s", 9}, {"CPU%", 6}, {"CP/SENT B", 9}, {"CP/RECV B", 9}, {"VERDICT", 0},
	}
}

// watchHeader is the table's header line, its first column titled first
// (TIME over interval rows, RUN over the summary rows).
func watchHeader(first string) string {
	var b strings.Builder
	for i, c := range watchColumns() {
		if i == 0 {
			c.title = first
		} else {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%-*s", c.width, c.title)
	}
	return strings.TrimRight(b.String(), " ")
}

// watchLine formats one record as a table row. Absent fields print "-";
// proc-mode figures are marked "~" (estimates).
func watchLine(r metrics.Record, verdict string) string {
	est := ""
	if r.Estimate {
		est = "~"
	}
	per := func(p *uint64) string {
		if v, ok := r.PerSecond(p); ok {
			return est + metrics.SI(v)
		}
		return "-"
	}
	ctx := "-"
	if v, i, ok := r.CtxPerSecond(); ok {
		ctx = est + metrics.SI(v) + "/" + metrics.SI(i)
	}
	cpu := "-"
	if v, ok := r.CPUPercent(); ok {
		cpu = fmt.Sprintf("%s%.1f", est, v)
	}
	ratio := func(v float64, ok bool) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	bytesPerS := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return metrics.SI(*p) + "B"
	}
	cols := watchColumns()
	subject := r.Subject
	if len(subject) > cols[2].width {
		subject = subject[:cols[2].width-1] + "…"
	}
	when := r.TS.Local().Format("15:04:05")
	if r.Interval != "" {
		when = r.Interval
	}
	cells := []string{
		when, string(r.Mode) + est, subject, bytesPerS(r.DeliveredBytesPerS), bytesPerS(r.ReceivedBytesPerS),
		per(r.Syscalls), per(r.ModeSwitches), ctx, per(r.PageFaults), cpu, ratio(r.SentCopiesPerByte()), ratio(r.ReceivedCopiesPerByte()), verdict,
	}
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%-*s", cols[i].width, c)
	}
	return strings.TrimRight(b.String(), " ")
}
