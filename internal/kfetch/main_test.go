package kfetch

import (
	"os"
	"testing"

	"github.com/copyscope/copyscope/internal/fdleak"
)

func TestMain(m *testing.M) {
	os.Exit(fdleak.Run(m, "client socket, fake server and broker (Close every client)"))
}
