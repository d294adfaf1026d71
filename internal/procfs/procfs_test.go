package procfs

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Stat
		err      bool
	}{
		{"plain", "42 (cat) R 1 42 42 0 -1 4194304 120 0 3 0 7 9 0 0 20 0 1 0 100 1000 10\n",
			Stat{Comm: "cat", State: 'R', MinFlt: 120, MajFlt: 3, UTime: 7, STime: 9}, false},
		// A process names itself: the comm ends at the last ')'.
		{"hostile comm", "7 (a) Z 1 (b) S 1 1 1 0 -1 0 5 0 6 0 1 2 0 0 20 0 1 0 1 1 1\n",
			Stat{Comm: "a) Z 1 (b", State: 'S', MinFlt: 5, MajFlt: 6, UTime: 1, STime: 2}, false},
		{"zombie", "9 (x) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", Stat{Comm: "x", State: 'Z'}, false},
		{"no comm", "42 cat R 1", Stat{}, true},
		{"short", "42 (cat) R 1 2 3", Stat{}, true},
		{"bad number", "42 (cat) R 1 42 42 0 -1 4194304 x 0 3 0 7 9 0 0", Stat{}, true},
	} {
		got, err := ParseStat([]byte(tc.in))
		if (err != nil) != tc.err || (err == nil && got != tc.want) {
			t.Errorf("%s: ParseStat = %+v, %v; want %+v, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
	if !(Stat{State: 'Z'}).Exited() || !(Stat{State: 'X'}).Exited() || (Stat{State: 'S'}).Exited() {
		t.Error("Exited: Z and X have exited, S has not")
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tnginx: worker\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t812\nPid:\t815\n" +
		"CapEff:\t000001ffffffffff\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n"
	got, err := ParseStatus([]byte(in))
	want := Status{Name: "nginx: worker", State: 'S', Tgid: 812, VoluntaryCtxt: 150, NonvoluntaryCtxt: 7, CapEff: 0x1ffffffffff}
	if err != nil || got != want {
		t.Errorf("ParseStatus = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"Name:\tx\n", "Tgid:\tx\n", "Tgid:\t1\nvoluntary_ctxt_switches:\t-1\n", "Tgid:\t1\nCapEff:\tzz\n"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseIO(t *testing.T) {
	got, err := ParseIO([]byte("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 0\n"))
	if want := (IO{RChar: 10, WChar: 20, SyscR: 3, SyscW: 4}); err != nil || got != want {
		t.Errorf("ParseIO = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseIO([]byte("rchar: ten\n")); err == nil {
		t.Error("ParseIO accepted a non-number")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := "22 1 0:21 / /proc rw,nosuid - proc proc rw\n" +
		"30 22 0:26 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n" +
		"31 22 0:27 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\n"
	got, err := ParseMountinfo([]byte(in))
	want := []Mount{{"/proc", "proc"}, {"/sys/fs/cgroup", "cgroup2"}, {"/mnt/with space", "tmpfs"}}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseMountinfo = %+v, %v; want %+v", got, err, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := ParseMountinfo([]byte("1 2 3 4 5 6 7\n")); err == nil {
		t.Error("ParseMountinfo accepted a line without \"- fstype\"")
	}
}

// TestSelf reads this process's own files and checks them against what
// the kernel says through other interfaces: getpid, gettid, the thread's
// CPU clock, getrusage and the running kernel's mount of /proc.
func TestSelf(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, tid := os.Getpid(), unix.Gettid()
	st, err := Thread(pid, tid).Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Tgid != pid || st.Exited() {
		t.Errorf("status of this thread: Tgid %d (want %d), state %c", st.Tgid, pid, st.State)
	}
	if anyst, err := AnyTask(tid).Status(); err != nil || anyst.Tgid != pid {
		t.Errorf("/proc/<tid>/status: Tgid %d, %v; want %d", anyst.Tgid, err, pid)
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	after, err := Thread(pid, tid).Status()
	if err != nil {
		t.Fatal(err)
	}
	if v := uint64(ru.Nvcsw); v < st.VoluntaryCtxt || v > after.VoluntaryCtxt {
		t.Errorf("getrusage voluntary switches %d outside status's %d..%d", v, st.VoluntaryCtxt, after.VoluntaryCtxt)
	}
	stat, err := Thread(pid, tid).Stat()
	if err != nil {
		t.Fatal(err)
	}
	if stat.State != 'R' {
		t.Errorf("this running thread's state is %c, want R", stat.State)
	}
	// schedstat first: read after the clock it could only be larger.
	run, runErr := Thread(pid, tid).SchedRunNs()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		t.Fatal(err)
	}
	if runErr == nil && (run == 0 || run > uint64(ts.Nano())) {
		t.Errorf("schedstat run time %d ns, want more than 0 and at most the thread CPU clock's %d ns", run, ts.Nano())
	}
	tids, err := Process(pid).Tasks()
	if err != nil || !contains(tids, tid) {
		t.Errorf("Tasks of this process = %v, %v; want it to hold %d", tids, err, tid)
	}
	if io, err := Self().IO(); err == nil && io.SyscR == 0 {
		t.Error("this process's syscr is 0 after reading files")
	}
	if pts, err := MountPoints("proc"); err != nil || !contains(pts, Root) {
		t.Errorf("proc mount points = %v, %v; want %s among them", pts, err, Root)
	}
	if n, err := PidMax(); err != nil || n <= tid {
		t.Errorf("PidMax = %d, %v; want more than this thread id %d", n, err, tid)
	}
}

func contains[T comparable](xs []T, x T) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestDiscovery finds a child by its comm, tells a process from a thread,
// and sees it die (zombie) before it is reaped.
func TestDiscovery(t *testing.T) {
	name := "cs-procfs-" + strconv.Itoa(os.Getpid()%100000)
	// The comm is the executable's name: run a renamed copy of sleep.
	path, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1) on PATH")
	}
	bin := t.TempDir() + "/" + name
	if b, err := os.ReadFile(path); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Skipf("cannot copy %s: %v", path, err)
	}
	cmd := exec.Command(bin, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	comm := name[:min(len(name), CommLen)]
	if c, err := Process(pid).Comm(); err != nil || c != comm {
		t.Fatalf("Comm of the child = %q, %v; want %q", c, err, comm)
	}
	found, err := ProcessesNamed(name + "-longer-than-fifteen")
	if err != nil || !contains(found, pid) {
		t.Errorf("ProcessesNamed = %v, %v; want %d (compared on %d characters)", found, err, pid, CommLen)
	}
	if err := CheckProcess(pid); err != nil {
		t.Errorf("CheckProcess(child) = %v", err)
	}
	if err := CheckProcess(unix.Gettid()); unix.Gettid() != os.Getpid() && (err == nil || !strings.Contains(err.Error(), "is a thread of process")) {
		t.Errorf("CheckProcess(thread) = %v, want \"is a thread of process\"", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Wait for the exit without reaping: the child is then a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if Process(pid).Alive() {
		t.Error("a killed, unreaped child (zombie) counts as alive")
	}
	if err := CheckProcess(pid); err == nil {
		t.Error("CheckProcess accepted a zombie")
	}
	_ = cmd.Wait()
	if _, err := Process(pid).Stat(); !Gone(err) {
		t.Errorf("Stat of a reaped child: %v, want an error Gone reports", err)
	}
}
