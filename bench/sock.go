package bench

import (
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
)

// dialBlocking connects a blocking TCP socket to addr (host:port on
// 127.0.0.1) and applies SO_RCVLOWAT when rcvlowat > 0.
func dialBlocking(addr string, rcvlowat int) (int, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, fmt.Errorf("resolve %s: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket for %s: %w", addr, err)
	}
	if rcvlowat > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, rcvlowat); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("set SO_RCVLOWAT %d: %w", rcvlowat, err)
		}
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to %s: %w (is the broker listening?)", addr, err)
	}
	return fd, nil
}

// setCongestion sets TCP congestion control name on fd ("" leaves it).
func setCongestion(fd int, name string) error {
	if name == "" {
		return nil
	}
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, name); err != nil {
		return fmt.Errorf("set TCP congestion control %q: %w (see net.ipv4.tcp_available_congestion_control and tcp_allowed_congestion_control)", name, err)
	}
	return nil
}

// checkCongestion tries congestion control name on a throwaway socket.
func checkCongestion(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("TCP congestion control %q: socket: %w", name, err)
	}
	defer unix.Close(fd)
	return setCongestion(fd, name)
}

// hostCongestion is net.ipv4.tcp_congestion_control ("unknown" if
// unreadable).
func hostCongestion() string {
	v, err := procfs.Sysctl("net/ipv4/tcp_congestion_control")
	if err != nil {
		return "unknown"
	}
	return v
}

// localAddr is the socket's local address as "ip:port".
func localAddr(fd int) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return fmt.Sprintf("%d.%d.%d.%d:%d", in.Addr[0], in.Addr[1], in.Addr[2], in.Addr[3], in.Port)
	}
	return ""
}

// pinThread binds thread tid (0: the caller) to cpu when cpu >= 0 and the
// machine has that CPU (bench pins the sender to CPU0 and the receiver to
// CPU1).
func pinThread(tid, cpu int) error {
	if cpu < 0 || cpu >= runtime.NumCPU() {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(tid, &set); err != nil {
		return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
	}
	return nil
}

// placeThread pins thread tid (0: the caller) to cpu (if cpu >= 0) and,
// with fifo > 0, gives it SCHED_FIFO priority fifo, so that other
// processes cannot preempt it (bench --fifo; needs root or CAP_SYS_NICE).
func placeThread(tid, cpu, fifo int) error {
	if err := pinThread(tid, cpu); err != nil {
		return err
	}
	if fifo <= 0 {
		return nil
	}
	attr := unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: uint32(fifo)}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("make thread %d SCHED_FIFO %d: %w (needs root or CAP_SYS_NICE; drop --fifo)", tid, fifo, err)
	}
	return nil
}

// releaseThread undoes placeThread for a thread bench does not own: any
// CPU, SCHED_NORMAL.
func releaseThread(tid int) {
	var set unix.CPUSet
	for i := 0; i < runtime.NumCPU(); i++ {
		set.Set(i)
	}
	_ = unix.SchedSetaffinity(tid, &set)
	attr := unix.SchedAttr{Policy: unix.SCHED_NORMAL}
	_ = unix.SchedSetAttr(tid, &attr, 0)
}

// confineOthers binds every thread the process has now to cpu and returns
// the function that lets them run anywhere again. Threads created later
// inherit the creator's set. The data threads pin themselves to the data
// CPU afterwards, so the Go runtime's own threads (sysmon, GC workers,
// the broker's accept loop) share the consumer's CPU instead of
// preempting a data thread: both variants then see the same neighbours.
func confineOthers(cpu int) (restore func()) {
	if cpu < 0 || cpu >= runtime.NumCPU() {
		return func() {}
	}
	all, err := procfs.Self().Tasks()
	if err != nil {
		return func() {}
	}
	var one unix.CPUSet
	one.Set(cpu)
	var tids []int
	for _, tid := range all {
		if unix.SchedSetaffinity(tid, &one) == nil {
			tids = append(tids, tid)
		}
	}
	return func() {
		var all unix.CPUSet
		for i := 0; i < runtime.NumCPU(); i++ {
			all.Set(i)
		}
		now, _ := procfs.Self().Tasks() // nothing to restore if it fails
		for _, tid := range now {
			_ = unix.SchedSetaffinity(tid, &all)
		}
	}
}
