package probes

import (
	"os"
	"testing"

	"github.com/copyscope/copyscope/internal/fdleak"
)

// TestMain fails the package when the tests leave file descriptors open:
// BPF programs, maps and links are fds, and so are the /proc files the
// proc backend reads.
func TestMain(m *testing.M) { os.Exit(fdleak.Run(m, "probe, file and socket")) }
