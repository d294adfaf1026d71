package demo

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when a demo leaves file descriptors open
// after Close: sockets, segment files, BPF programs, maps and links.
func TestMain(m *testing.M) { os.Exit(runCheckingFDs(m)) }

func runCheckingFDs(m *testing.M) int {
	// The runtime keeps its poller fds once opened: open them first.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before, err := openFDs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "count open fds: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		return code
	}
	var leaked []string
	for range 30 { // closers on other goroutines get up to 3 s
		after, err := openFDs()
		if err != nil {
			fmt.Fprintf(os.Stderr, "count open fds: %v\n", err)
			return 1
		}
		leaked = leaked[:0]
		for fd, target := range after {
			if _, ok := before[fd]; !ok {
				leaked = append(leaked, strconv.Itoa(fd)+" -> "+target)
			}
		}
		if len(leaked) == 0 {
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Strings(leaked)
	fmt.Fprintf(os.Stderr, "FAIL: the demo tests leaked %d file descriptors (Close must release every socket, file and probe):\n  %s\n",
		len(leaked), strings.Join(leaked, "\n  "))
	return 1
}

// openFDs lists this process's open fds and their targets.
func openFDs() (map[int]string, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd == int(d.Fd()) {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + n)
		out[fd] = target
	}
	return out, nil
}
