// Package procfs is copyscope's one reader of /proc: a process's or a
// thread's stat, status, io, schedstat, comm and task list, its liveness,
// the mount table and the kernel limits copyscope needs. Every other
// package asks here instead of parsing /proc itself, so a format detail
// (a comm holding ") ", a hexadecimal capability set, an escaped mount
// point) is handled once.
//
// Parsers take the file's bytes and are fuzzed (a process chooses its own
// comm, so stat and status are untrusted input).
package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Root is where procfs is mounted.
const Root = "/proc"

// ClockTicks is USER_HZ, the unit of stat's utime and stime: 100 on every
// Linux architecture Go supports.
const ClockTicks = 100

// TicksToNs converts stat's clock ticks to nanoseconds.
func TicksToNs(ticks uint64) uint64 { return ticks * uint64(time.Second) / ClockTicks }

// CommLen is the longest command name the kernel keeps (TASK_COMM_LEN-1).
const CommLen = 15

// Dir is the /proc directory of one process or thread.
type Dir string

// Process is the directory of process pid (its counts include those of its
// exited threads).
func Process(pid int) Dir { return Dir(Root + "/" + strconv.Itoa(pid)) }

// Thread is the directory of thread tid of process pid.
func Thread(pid, tid int) Dir {
	return Dir(Root + "/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid))
}

// AnyTask is /proc/<tid>, which the kernel serves for any thread id, not
// only for process leaders (it is hidden from directory listings).
func AnyTask(tid int) Dir { return Dir(Root + "/" + strconv.Itoa(tid)) }

// Self is this process's directory.
func Self() Dir { return Dir(Root + "/self") }

// SelfThread is thread tid of this process.
func SelfThread(tid int) Dir { return Dir(Root + "/self/task/" + strconv.Itoa(tid)) }

// Path is the path of one file of the directory.
func (d Dir) Path(file string) string { return string(d) + "/" + file }

// read reads one file of the directory.
func (d Dir) read(file string) ([]byte, error) { return os.ReadFile(d.Path(file)) }

// Gone reports whether err means the process or thread no longer exists.
func Gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// Stat is what copyscope reads from a stat file.
type Stat struct {
	Comm  string
	State byte // R, S, D, Z, X, ...
	// Faults and times; a process's include its exited threads'.
	MinFlt, MajFlt uint64
	UTime, STime   uint64 // clock ticks (ClockTicks a second)
}

// Exited reports whether the task is a zombie or dead: it has exited and
// only its /proc entry lingers until it is reaped.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// Stat reads the directory's stat file.
func (d Dir) Stat() (Stat, error) {
	b, err := d.read("stat")
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("parse %s: %w", d.Path("stat"), err)
	}
	return st, nil
}

// ParseStat parses the contents of a stat file.
func ParseStat(b []byte) (Stat, error) {
	var st Stat
	// comm is in parentheses and may itself hold spaces and parentheses:
	// it ends at the last ')'.
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return st, fmt.Errorf("no (comm) in %q", s)
	}
	st.Comm = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 13 || len(f[0]) != 1 {
		return st, fmt.Errorf("%d fields after comm, want at least 13 starting with a one-letter state", len(f))
	}
	st.State = f[0][0]
	for _, x := range []struct {
		dst *uint64
		i   int
	}{{&st.MinFlt, 10}, {&st.MajFlt, 12}, {&st.UTime, 14}, {&st.STime, 15}} {
		var err error
		if *x.dst, err = strconv.ParseUint(f[x.i-3], 10, 64); err != nil {
			return st, fmt.Errorf("field %d: %w", x.i, err)
		}
	}
	return st, nil
}

// Status is what copyscope reads from a status file. Fields missing from
// the file are zero.
type Status struct {
	Name  string // the comm, with the kernel's escapes
	State byte
	Tgid  int
	// Context switches: sleeping (voluntary) and preempted.
	VoluntaryCtxt, NonvoluntaryCtxt uint64
	CapEff                          uint64 // effective capability set
}

// Exited reports whether the task is a zombie or dead.
func (s Status) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// Status reads the directory's status file.
func (d Dir) Status() (Status, error) {
	b, err := d.read("status")
	if err != nil {
		return Status{}, err
	}
	st, err := ParseStatus(b)
	if err != nil {
		return Status{}, fmt.Errorf("parse %s: %w", d.Path("status"), err)
	}
	return st, nil
}

// ParseStatus parses the contents of a status file. A line copyscope uses
// whose value does not parse is an error; Tgid must be present.
func ParseStatus(b []byte) (Status, error) {
	var st Status
	var err error
	haveTgid := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			st.Name = v
		case "State":
			if v != "" {
				st.State = v[0]
			}
		case "Tgid":
			st.Tgid, err = strconv.Atoi(v)
			haveTgid = true
		case "voluntary_ctxt_switches":
			st.VoluntaryCtxt, err = strconv.ParseUint(v, 10, 64)
		case "nonvoluntary_ctxt_switches":
			st.NonvoluntaryCtxt, err = strconv.ParseUint(v, 10, 64)
		case "CapEff":
			st.CapEff, err = strconv.ParseUint(v, 16, 64)
		}
		if err != nil {
			return Status{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	if !haveTgid {
		return Status{}, errors.New("no Tgid line")
	}
	return st, nil
}

// IO is an io file's byte and call counts. Measured on Linux 6.18:
// RChar/WChar count bytes returned by the read/write family (read, readv,
// pread*, write, writev, pwrite*, on any fd including sockets) and by
// sendfile, which adds its bytes to both; send*, recv*, sendmsg, recvmsg
// and splice add nothing. They are bytes passed through syscalls, not
// bytes copied by the CPU. SyscR/SyscW count the same calls. Reading
// another user's io needs ptrace access (root or the same user).
type IO struct {
	RChar, WChar, SyscR, SyscW uint64
}

// IO reads the directory's io file.
func (d Dir) IO() (IO, error) {
	b, err := d.read("io")
	if err != nil {
		return IO{}, err
	}
	io, err := ParseIO(b)
	if err != nil {
		return IO{}, fmt.Errorf("parse %s: %w", d.Path("io"), err)
	}
	return io, nil
}

// ParseIO parses the contents of an io file.
func ParseIO(b []byte) (IO, error) {
	var io IO
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return IO{}, fmt.Errorf("%s: %w", k, err)
		}
		switch k {
		case "rchar":
			io.RChar = n
		case "wchar":
			io.WChar = n
		case "syscr":
			io.SyscR = n
		case "syscw":
			io.SyscW = n
		}
	}
	return io, nil
}

// SchedRunNs reads the first field of schedstat: the scheduler's exact
// time on CPU in nanoseconds. Kernels without CONFIG_SCHED_INFO have no
// schedstat (an fs.ErrNotExist error that Gone also reports).
func (d Dir) SchedRunNs() (uint64, error) {
	b, err := d.read("schedstat")
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	n, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", d.Path("schedstat"), err)
	}
	return n, nil
}

// Comm reads the directory's command name.
func (d Dir) Comm() (string, error) {
	b, err := d.read("comm")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Alive reports whether the task exists and has not exited (a zombie is
// not alive).
func (d Dir) Alive() bool {
	st, err := d.Stat()
	return err == nil && !st.Exited()
}

// Tasks lists the thread ids of a process directory, in ascending order.
func (d Dir) Tasks() ([]int, error) { return listIDs(string(d) + "/task") }

// listIDs lists the numeric entries of a directory, in ascending order.
func listIDs(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(ents))
	for _, e := range ents {
		if id, err := strconv.Atoi(e.Name()); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids, nil
}

// Pids lists every process id, in ascending order.
func Pids() ([]int, error) { return listIDs(Root) }

// Sysctl reads a kernel setting under /proc/sys, named by its path there
// ("kernel/pid_max", "net/ipv4/tcp_congestion_control"), without the
// trailing newline.
func Sysctl(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(Root, "sys", name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// PidMax is the kernel's pid_max (every thread id is below it).
func PidMax() (int, error) {
	v, err := Sysctl("kernel/pid_max")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("parse kernel.pid_max: %w", err)
	}
	return n, nil
}
