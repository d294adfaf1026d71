package probes

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when the tests leave file descriptors open:
// BPF programs, maps and links are fds, and so are the /proc files the
// proc backend reads.
func TestMain(m *testing.M) { os.Exit(runCheckingFDs(m)) }

func runCheckingFDs(m *testing.M) int {
	// The runtime opens its poller fds (epoll, eventfd) on first use and
	// keeps them: open them now so they are in the baseline.
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
	fmt.Fprintf(os.Stderr, "FAIL: the tests leaked %d file descriptors (close every probe, file and socket they open):\n  %s\n",
		len(leaked), strings.Join(leaked, "\n  "))
	return 1
}

// openFDs lists this process's open fds and what they point at, leaving
// out the directory handle used to list them.
func openFDs() (map[int]string, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the listing's own fd, closed by now
		}
		if strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") {
			continue
		}
		out[fd] = target
	}
	return out, nil
}
