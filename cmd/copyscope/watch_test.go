package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/probes"
)

// lockedBuffer is an io.Writer safe to read while a command writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runWatchCmd runs copyscope watch in this process and returns its stdout,
// stderr and error.
func runWatchCmd(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errb lockedBuffer
	root := newRootCmd()
	root.SetArgs(append([]string{"watch"}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err = root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// watchJSON parses watch --json output into one map per line, leaving out
// the summary records (watchTotals has those).
func watchJSON(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, r := range watchJSONAll(t, out) {
		if r["interval"] == nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// watchTotals returns the summary records ("interval":"total") of watch
// --json output, by subject.
func watchTotals(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	tot := map[string]map[string]any{}
	for _, r := range watchJSONAll(t, out) {
		if r["interval"] == "total" {
			tot[r["subject"].(string)] = r
		} else if r["interval"] != nil {
			t.Errorf("record with interval %v, want none or \"total\"", r["interval"])
		}
	}
	return tot
}

// watchJSONAll parses every line of watch --json output.
func watchJSONAll(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("watch --json line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

// startChild starts a command killed and reaped when the test ends.
func startChild(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(name, args...)
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
	})
	return c
}

// ebpfOrSkip says why eBPF mode cannot be tested here, or returns.
func ebpfOrSkip(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("watch --mode ebpf needs root (CAP_BPF + CAP_PERFMON): run the tests as root")
	}
	p, err := probes.OpenEBPF(probes.EBPFOptions{})
	if err != nil {
		t.Skipf("eBPF probes cannot load here: %v (copyscope doctor says why)", err)
	}
	p.Close()
}

// TestWatchDD watches dd, a program we did not write, and checks the
// records against dd's own /proc counters.
func TestWatchDD(t *testing.T) {
	for _, mode := range []string{"proc", "ebpf"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ebpf" {
				ebpfOrSkip(t)
			}
			dd := startChild(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "status=none")
			pid := dd.Process.Pid
			io0, err := procfs.Thread(pid, pid).IO()
			if err != nil {
				t.Fatal(err)
			}
			out, stderr, err := runWatchCmd(context.Background(), "--pid", strconv.Itoa(pid), "--duration", "3s", "--json", "--mode", mode, "--interval", "500ms")
			if err != nil {
				t.Fatalf("watch: %v\n%s", err, stderr)
			}
			io1, err := procfs.Thread(pid, pid).IO()
			if err != nil {
				t.Fatal(err)
			}
			recs := watchJSON(t, out)
			if len(recs) < 5 || len(recs) > 7 {
				t.Fatalf("%d records over 3s at 500ms, want 6 (one per interval):\n%s", len(recs), out)
			}
			var syscalls, reads, writes float64
			for _, r := range recs {
				for _, k := range []string{"ts", "interval_s", "mode", "kind", "subject", "syscalls", "mode_switches", "cpu_ns", "ctx_switches_voluntary", "ctx_switches_involuntary", "page_faults", "verdict"} {
					if _, ok := r[k]; !ok {
						t.Errorf("record lacks %q: %v", k, r)
					}
				}
				if r["mode"] != mode || r["kind"] != "process" || r["subject"] != "dd["+strconv.Itoa(pid)+"]" {
					t.Errorf("record %v: want mode %s, kind process, subject dd[%d]", r, mode, pid)
				}
				if iv := r["interval_s"].(float64); iv < 0.3 || iv > 1.5 {
					t.Errorf("interval_s = %v, want about 0.5", iv)
				}
				syscalls += r["syscalls"].(float64)
				if mode == "proc" {
					if r["estimate"] != true || r["delivered_bytes"] != nil || r["copied_to_user_bytes"] != nil {
						t.Errorf("proc record %v: want estimate true and no delivered/copied fields", r)
					}
					continue
				}
				by, _ := r["syscalls_by_name"].(map[string]any)
				rd, _ := by["read"].(float64)
				wr, _ := by["write"].(float64)
				reads += rd
				writes += wr
				if r["delivered_bytes"] == nil || r["copied_to_user_bytes"] == nil || r["estimate"] != nil {
					t.Errorf("ebpf record %v: want delivered and copied fields, no estimate flag", r)
				}
				// /dev/zero is zero-filled in place, /dev/null discards:
				// the kernel copies nothing for either.
				if r["copied_to_user_bytes"] != 0.0 || r["copied_from_user_bytes"] != 0.0 {
					t.Errorf("dd from /dev/zero to /dev/null: copied %v to user, %v from user; want 0 and 0", r["copied_to_user_bytes"], r["copied_from_user_bytes"])
				}
			}
			// One summary over the whole run, equal to the intervals' sum.
			tot := watchTotals(t, out)
			if len(tot) != 1 || tot["dd["+strconv.Itoa(pid)+"]"] == nil {
				t.Fatalf("summary records %v, want one for dd[%d]", tot, pid)
			}
			if got := tot["dd["+strconv.Itoa(pid)+"]"]["syscalls"]; got != syscalls {
				t.Errorf("summary record counts %v syscalls, the intervals %v", got, syscalls)
			}
			// dd's read+write calls during watch are at most what /proc
			// counted around it, and most of it (dd runs flat out).
			total := float64(io1.SyscR + io1.SyscW - io0.SyscR - io0.SyscW)
			rw := syscalls
			if mode == "ebpf" {
				rw = reads + writes
				if syscalls < rw {
					t.Errorf("syscalls %v < read+write %v", syscalls, rw)
				}
			}
			t.Logf("%s: watch counted %.0f read/write calls of dd, /proc %.0f around it (%.0f%%); all syscalls %.0f", mode, rw, total, 100*rw/total, syscalls)
			if rw > total || rw < 0.5*total {
				t.Errorf("watch counted %.0f read/write calls, /proc says %.0f happened around the watch: want at most that and at least half", rw, total)
			}
		})
	}
}

// TestWatchErrors checks the messages for what cannot be watched.
func TestWatchErrors(t *testing.T) {
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	dead := c.Process.Pid
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pid", strconv.Itoa(dead), "--mode", "proc"}, "no such process: " + strconv.Itoa(dead)},
		{[]string{"--comm", "no-such-comm-xyz", "--mode", "proc"}, "no running process is named"},
		{[]string{"--mode", "proc"}, "give --pid PID, --comm NAME or --cgroup PATH"},
		{[]string{"--pid", "1", "--by", "socket"}, "unknown grouping"},
		{[]string{"--pid", "1", "--mode", "magic"}, "unknown --mode"},
	} {
		_, _, err := runWatchCmd(context.Background(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("watch %v = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestWatchExitsAndComm finds processes by command name, reports each one
// that exits, and ends with status 0 when all are gone.
func TestWatchExitsAndComm(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1)")
	}
	// A copy of sleep under a name no other process has.
	name := "cswatch" + strconv.Itoa(os.Getpid()%100000)
	bin := filepath.Join(t.TempDir(), name)
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	short := startChild(t, bin, "0.6")
	long := startChild(t, bin, "1.6")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		out, stderr string
		err         error
	}
	done := make(chan result, 1)
	go func() {
		out, stderr, err := runWatchCmd(ctx, "--comm", name, "--by", "comm", "--interval", "200ms", "--json", "--mode", "proc")
		done <- result{out, stderr, err}
	}()
	time.Sleep(300 * time.Millisecond)
	late := startChild(t, bin, "0.5") // found by the rescan of an interval
	res := <-done
	out, stderr, err := res.out, res.stderr, res.err
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "watching new "+name+" process "+strconv.Itoa(late.Process.Pid)) ||
		!strings.Contains(stderr, "pid "+strconv.Itoa(late.Process.Pid)+" exited") {
		t.Errorf("the process started later (%d) was not found by the rescan, or its exit not reported:\n%s", late.Process.Pid, stderr)
	}
	if ctx.Err() != nil {
		t.Fatal("watch did not end when every process had exited")
	}
	iShort := strings.Index(stderr, "pid "+strconv.Itoa(short.Process.Pid)+" exited")
	iLong := strings.Index(stderr, "pid "+strconv.Itoa(long.Process.Pid)+" exited")
	iAll := strings.Index(stderr, "every watched process has exited")
	if iShort < 0 || iLong < iShort || iAll < iLong {
		t.Errorf("stderr should report pid %d exited, then pid %d, then all gone:\n%s", short.Process.Pid, long.Process.Pid, stderr)
	}
	recs := watchJSON(t, out)
	if len(recs) < 4 {
		t.Fatalf("%d records, want one per 200ms for about 1.6s:\n%s", len(recs), out)
	}
	for _, r := range recs {
		if r["kind"] != "comm" || r["subject"] != name {
			t.Errorf("record %v: want kind comm, subject %s", r, name)
		}
	}
}

// TestWatchTable checks the plain table: header once, one row per
// interval, estimates marked.
func TestWatchTable(t *testing.T) {
	dd := startChild(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=4k", "status=none")
	out, stderr, err := runWatchCmd(context.Background(), "--pid", strconv.Itoa(dd.Process.Pid), "--duration", "1s", "--interval", "250ms", "--mode", "proc", "--by", "thread")
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 6 || !strings.HasPrefix(lines[0], "TIME") || strings.Count(out, "TIME") != 1 ||
		!strings.HasPrefix(lines[len(lines)-2], "RUN") || !strings.HasPrefix(lines[len(lines)-1], "total") {
		t.Fatalf("want a header, about 4 rows, then the summary's header and row:\n%s", out)
	}
	for _, l := range append(lines[1:len(lines)-2], lines[len(lines)-1]) {
		if !strings.Contains(l, "proc~") || !strings.Contains(l, "dd:"+strconv.Itoa(dd.Process.Pid)) || !strings.Contains(l, "unknown (copies need eBPF mode)") {
			t.Errorf("row %q: want proc~, subject dd:%d and the verdict", l, dd.Process.Pid)
		}
	}
	if !strings.Contains(stderr, "estimate") {
		t.Errorf("stderr does not say proc figures are estimates:\n%s", stderr)
	}
}

// TestWatchSIGINT: SIGINT ends watch cleanly with status 0, probes closed.
func TestWatchSIGINT(t *testing.T) {
	dd := startChild(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "status=none")
	done := make(chan error, 1)
	go func() {
		_, _, err := runWatchCmd(context.Background(), "--pid", strconv.Itoa(dd.Process.Pid), "--mode", "proc", "--interval", "100ms")
		done <- err
	}()
	time.Sleep(500 * time.Millisecond)
	// NotifyContext catches it, so the test process itself is not killed.
	if err := unix.Kill(os.Getpid(), unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("watch after SIGINT = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop within 10s of SIGINT")
	}
}

// TestWatchUnprivileged runs watch as nobody: --mode auto falls back to
// /proc with a warning; nobody's own dd is measured; root's dd cannot have
// its syscalls read, so they are absent (not zero) and a note says why.
func TestWatchUnprivileged(t *testing.T) {
	setpriv := setprivOrSkip(t)
	bin := nobodyBinary(t)
	mine := startChild(t, setpriv, append(nobodyArgs(), "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "status=none")...)
	roots := startChild(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "status=none")
	// setpriv drops to nobody and then execs dd: wait for dd.
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(mine.Process.Pid) + "/comm")
		return strings.TrimSpace(string(b)) == "dd"
	}) {
		t.Fatal("setpriv never became dd")
	}
	for _, tc := range []struct {
		name     string
		pid      int
		syscalls bool
	}{{"own process", mine.Process.Pid, true}, {"root's process", roots.Process.Pid, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c := exec.Command(setpriv, append(nobodyArgs(), bin, "watch", "--pid", strconv.Itoa(tc.pid), "--duration", "1s", "--interval", "500ms", "--json")...)
			c.Stderr = &stderr
			out, err := c.Output()
			if err != nil {
				t.Fatalf("watch as nobody: %v\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "falling back to /proc estimates") {
				t.Errorf("no fallback warning on stderr:\n%s", stderr.String())
			}
			recs := watchJSON(t, string(out))
			if len(recs) < 1 {
				t.Fatalf("no records:\n%s", out)
			}
			for _, r := range recs {
				_, has := r["syscalls"]
				if r["mode"] != "proc" || r["estimate"] != true || has != tc.syscalls || r["cpu_ns"] == nil {
					t.Errorf("record %v: want a proc estimate with cpu_ns, syscalls present = %v", r, tc.syscalls)
				}
			}
			if !tc.syscalls && !strings.Contains(stderr.String(), "unreadable") {
				t.Errorf("stderr does not say why syscalls are missing:\n%s", stderr.String())
			}
		})
	}
}

// TestWatchCgroup watches a test cgroup v2 directory, given relative to
// the cgroup2 mount, with dd moved into it, in both modes.
func TestWatchCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a test cgroup needs root: run the tests as root")
	}
	mnt := probes.Cgroup2Mount()
	if _, err := os.Stat(filepath.Join(mnt, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v2 hierarchy (%v): mount -t cgroup2 none /sys/fs/cgroup", err)
	}
	name := "copyscope-watch-test-" + strconv.Itoa(os.Getpid())
	dir := filepath.Join(mnt, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	dd := exec.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=64k", "status=none")
	if err := dd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dd.Process.Kill()
		dd.Wait()
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup %s: %v", dir, err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(dd.Process.Pid)), 0); err != nil {
		t.Fatalf("move dd into %s: %v", dir, err)
	}
	for _, mode := range []string{"proc", "ebpf"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ebpf" {
				ebpfOrSkip(t)
			}
			out, stderr, err := runWatchCmd(context.Background(), "--cgroup", name, "--duration", "1s", "--interval", "500ms", "--json", "--mode", mode)
			if err != nil {
				t.Fatalf("watch --cgroup %s: %v\n%s", name, err, stderr)
			}
			recs := watchJSON(t, out)
			if len(recs) < 2 {
				t.Fatalf("%d records, want 2:\n%s\n%s", len(recs), out, stderr)
			}
			want := "dd[" + strconv.Itoa(dd.Process.Pid) + "]"
			for _, r := range recs {
				if r["subject"] != want || r["syscalls"] == nil || r["syscalls"].(float64) < 1000 {
					t.Errorf("record %v: want subject %s with dd's syscalls (only dd is in the cgroup)", r, want)
				}
			}
		})
	}
}

// bpfProgsOf lists the BPF program ids a process holds open, from the
// prog_id lines of /proc/<pid>/fdinfo.
func bpfProgsOf(pid int) []string {
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fdinfo")
	var ids []string
	for _, e := range ents {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/fdinfo/" + e.Name())
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				ids = append(ids, strings.TrimSpace(v))
			}
		}
	}
	return ids
}

// TestWatchLeavesNothingAttached: after watch in eBPF mode ends by
// SIGTERM, SIGINT or SIGKILL, none of its programs is loaded any more.
func TestWatchLeavesNothingAttached(t *testing.T) {
	ebpfOrSkip(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool is not installed (apt-get install bpftool)")
	}
	bin := buildBinary(t)
	target := startChild(t, "sleep", "120")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			w := exec.Command(bin, "watch", "--mode", "ebpf", "--interval", "200ms", "--pid", strconv.Itoa(target.Process.Pid))
			var stderr lockedBuffer
			w.Stderr = &stderr
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			defer w.Process.Kill()
			if !waitFor(30*time.Second, func() bool { return strings.Contains(stderr.String(), "copyscope: watching") }) {
				t.Fatalf("watch did not attach:\n%s", stderr.String())
			}
			ids := bpfProgsOf(w.Process.Pid)
			if len(ids) == 0 {
				t.Fatal("watch holds no BPF programs while attached")
			}
			w.Process.Signal(sig)
			err := w.Wait()
			if sig != syscall.SIGKILL && err != nil {
				t.Errorf("watch after %v: %v, want exit status 0\n%s", sig, err, stderr.String())
			}
			// The kernel frees a program once its last fd and link are gone;
			// give it a moment (bounded) after the process is reaped.
			var left []string
			waitFor(5*time.Second, func() bool {
				left = left[:0]
				for _, id := range ids {
					if exec.Command("bpftool", "prog", "show", "id", id).Run() == nil {
						left = append(left, id)
					}
				}
				return len(left) == 0
			})
			if len(left) > 0 {
				t.Errorf("after %v, programs %v are still loaded (of %v)", sig, left, ids)
			}
		})
	}
}

// TestWatchIdleProcessShows: a watched process that makes no syscall still
// has its row, in both modes, with zero counts rather than no line.
func TestWatchIdleProcessShows(t *testing.T) {
	idle := startChild(t, "sleep", "60")
	want := "sleep[" + strconv.Itoa(idle.Process.Pid) + "]"
	// Let its start-up (exec, dynamic loading) end: asleep in nanosleep.
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(idle.Process.Pid) + "/syscall")
		nr, _, _ := strings.Cut(string(b), " ")
		// clock_nanosleep and nanosleep on x86_64, then on arm64
		return nr == "230" || nr == "35" || nr == "115" || nr == "101"
	}) {
		t.Fatal("sleep never went to sleep")
	}
	for _, mode := range []string{"proc", "ebpf"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "ebpf" {
				ebpfOrSkip(t)
			}
			out, stderr, err := runWatchCmd(context.Background(), "--pid", strconv.Itoa(idle.Process.Pid), "--duration", "600ms", "--interval", "300ms", "--json", "--mode", mode)
			if err != nil {
				t.Fatalf("watch: %v\n%s", err, stderr)
			}
			recs := watchJSON(t, out)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2 (one per interval):\n%s", len(recs), out)
			}
			for _, r := range recs {
				if r["subject"] != want || r["syscalls"] != float64(0) {
					t.Errorf("record %v: want %s with 0 syscalls", r, want)
				}
			}
		})
	}
}
