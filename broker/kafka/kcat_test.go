package kafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestKcatRoundTrip produces 1,000,000 messages of 100 bytes with kcat -P
// (10,000 with -short), consumes them with kcat -C, checks the output is
// byte-identical and in order, restarts the broker and checks again.
func TestKcatRoundTrip(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); skipping the kcat round trip")
	}
	n := 1_000_000
	if testing.Short() {
		n = 10_000
	}
	dir := t.TempDir()
	input := filepath.Join(t.TempDir(), "in.txt")
	f, err := os.Create(input)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	line := make([]byte, 100)
	for i := range n {
		copy(line, fmt.Sprintf("%09d:", i))
		for j := 10; j < 100; j++ {
			line[j] = 'a' + byte((i+j)%26)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	wantSum := sha256.Sum256(want)

	b := startBroker(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, kcat, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	start := time.Now()
	run("-b", b.addr, "-t", "kc", "-P", "-l", input)
	t.Logf("kcat produced %d messages in %v", n, time.Since(start))
	if md := run("-b", b.addr, "-L", "-t", "kc"); !bytes.Contains(md, []byte(`topic "kc"`)) || !bytes.Contains(md, []byte("broker 0 at 127.0.0.1")) {
		t.Fatalf("kcat -L does not list the broker and topic:\n%s", md)
	}
	consume := func(when string) {
		t.Helper()
		start := time.Now()
		got := run("-b", b.addr, "-t", "kc", "-C", "-o", "beginning", "-e", "-q")
		if sha256.Sum256(got) != wantSum {
			t.Fatalf("%s: consumed %d bytes (%d lines) differ from the %d produced", when, len(got), bytes.Count(got, []byte{'\n'}), len(want))
		}
		t.Logf("%s: kcat consumed %d messages in %v, sha256 %x", when, n, time.Since(start), wantSum[:8])
	}
	consume("first run")
	b.stop()
	b = startBroker(t, dir, nil)
	consume("after restart")
}
