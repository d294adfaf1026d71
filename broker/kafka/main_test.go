package kafka

import (
	"os"
	"testing"

	"github.com/copyscope/copyscope/internal/fdleak"
)

// TestMain fails the package if the tests leave file descriptors open:
// every connection's socket and every fetch's segment reference must be
// released, even on error paths.
func TestMain(m *testing.M) {
	os.Exit(fdleak.Run(m, "connection socket and segment reference (release every fetch, even on error paths)"))
}
