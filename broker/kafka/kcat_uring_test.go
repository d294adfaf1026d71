package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/copyscope/copyscope/internal/uring"
)

// TestKcatUringPaths: kcat produces a topic once and consumes it back
// byte-identical from a listener on each io_uring path, at 4 KiB, 64 KiB
// and 1 MiB chunks (responses cross chunk and batch boundaries).
func TestKcatUringPaths(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	if err := uring.Available(); errors.Is(err, uring.ErrUnavailable) {
		t.Skipf("%v", err)
	}
	var in bytes.Buffer
	for i := range 30000 {
		fmt.Fprintf(&in, "%06d:%s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, 50+i%700))
	}
	want := in.Bytes()
	paths := []string{"uring", "uring-splice", "uring-zc"}
	for _, chunk := range []int{4 << 10, 64 << 10, 1 << 20} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			b := startBroker(t, t.TempDir(), func(c *Config) {
				c.Chunk = chunk
				c.Listeners = nil
				for _, p := range paths {
					c.Listeners = append(c.Listeners, Listener{Addr: "127.0.0.1:0", Path: p})
				}
			})
			addr := map[string]string{}
			for _, a := range b.srv.Addrs() {
				addr[a.Path] = a.Addr
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			run := func(stdin []byte, args ...string) []byte {
				t.Helper()
				cmd := exec.CommandContext(ctx, kcat, args...)
				cmd.Stdin = bytes.NewReader(stdin)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
				}
				return out
			}
			run(want, "-b", addr["uring"], "-t", "u", "-P")
			for _, p := range paths {
				got := run(nil, "-b", addr[p], "-t", "u", "-C", "-o", "beginning", "-e", "-q")
				if !bytes.Equal(got, want) {
					t.Errorf("%s chunk %d: kcat consumed %d bytes sha256 %x, produced %d %x", p, chunk, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
				}
			}
		})
	}
}
