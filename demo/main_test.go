package demo

import (
	"os"
	"testing"

	"github.com/copyscope/copyscope/internal/fdleak"
)

// TestMain fails the package when a demo leaves file descriptors open
// after Close: sockets, segment files, BPF programs, maps and links.
func TestMain(m *testing.M) {
	os.Exit(fdleak.Run(m, "socket, segment file and probe (Close must release them)"))
}
