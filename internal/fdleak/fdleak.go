// Package fdleak lets a package's TestMain fail when its tests leave file
// descriptors open. BPF programs, maps and links, sockets, segment files and
// /proc readers are all fds, so a leak of any of them shows up here.
package fdleak

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Run runs the tests and returns their exit code, or 1 when they passed but
// left fds open that were not open before; what names the resources the
// package must close, for the failure message. Fuzzing runs are not checked
// (the fuzz engine keeps its own pipes open).
func Run(m *testing.M, what string) int {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return m.Run()
	}
	// The runtime opens its poller fds (epoll, eventfd) on first use and
	// keeps them: open them now so they are in the baseline.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	before, err := Open()
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
		after, err := Open()
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
	fmt.Fprintf(os.Stderr, "FAIL: the tests leaked %d file descriptors (close every %s they open):\n  %s\n",
		len(leaked), what, strings.Join(leaked, "\n  "))
	return 1
}

// Open lists this process's open fds and what they point at, leaving out
// the directory handle used to list them.
func Open() (map[int]string, error) {
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
