package kafka

import (
	"flag"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestMain fails the package if the tests leave file descriptors open:
// every connection's socket and every fetch's segment reference must be
// released, even on error paths.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // the fuzzing engine keeps its own pipes open
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close() // the runtime's poller fds exist from here on
	}
	before := openFDs()
	code := m.Run()
	after := openFDs()
	for i := 0; i < 100 && after > before; i++ {
		time.Sleep(20 * time.Millisecond)
		after = openFDs()
	}
	if code == 0 && after > before {
		fmt.Fprintf(os.Stderr, "file descriptor leak: %d open before the tests, %d after\n", before, after)
		code = 1
	}
	os.Exit(code)
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
