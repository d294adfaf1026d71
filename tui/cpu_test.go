package tui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replayEnv makes the test binary a UI replaying recorded samples once a
// second in its terminal (for TestRenderingCPU, which runs it in tmux).
const replayEnv = "COPYSCOPE_TUI_REPLAY"

// TestMain lets the test binary double as the replaying UI.
func TestMain(m *testing.M) {
	if spec := os.Getenv(replayEnv); spec != "" {
		os.Exit(replayMain(spec))
	}
	os.Exit(m.Run())
}

// replayMain runs the real UI (tui.Run on the terminal) for a while on the
// fixture, one sample per second as the demo sends them, then writes its
// own user+system CPU time in nanoseconds to the result file.
// spec is "<fixture>,<seconds>,<result file>".
func replayMain(spec string) int {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "replay spec must be fixture,seconds,result")
		return 2
	}
	secs, _ := strconv.Atoi(parts[1])
	samples, err := readSamples(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	ch := make(chan Sample)
	go func() {
		defer close(ch)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			select {
			case ch <- samples[i%len(samples)]:
			case <-ctx.Done():
				return
			}
		}
	}()
	cfg := Config{Title: "copyscope demo", Kernel: "replay", Demo: true,
		Subjects: []string{"read", "mmap", "sendfile", "splice", "zerocopy"}, Mode: "fair", Rate: 200e6, Chunk: 64 << 10}
	if err := Run(ctx, cfg, ch, nil, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	ns := ru.Utime.Nano() + ru.Stime.Nano()
	if err := os.WriteFile(parts[2], []byte(strconv.FormatInt(ns, 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestRenderingCPU measures the UI's own CPU cost end to end: the real
// program on a real terminal (tmux, 120x40) at the demo's rate of one
// sample per second. The target is under 3% of one core.
func TestRenderingCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s of wall time; skipped with -short")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed: cannot give the UI a terminal")
	}
	const secs = 10
	dir := t.TempDir()
	result := filepath.Join(dir, "cpu_ns")
	fixture, _ := filepath.Abs("testdata/demo_samples.jsonl")
	name := fmt.Sprintf("copyscope-tui-cpu-%d", os.Getpid())
	cmd := fmt.Sprintf("exec env %s=%s,%d,%s %s", replayEnv, fixture, secs, result, os.Args[0])
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	defer exec.Command("tmux", "kill-session", "-t", name).Run()
	deadline := time.Now().Add(secs*time.Second + 15*time.Second)
	var b []byte
	for time.Now().Before(deadline) {
		var err error
		if b, err = os.ReadFile(result); err == nil && len(b) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ns, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		t.Fatalf("the replaying UI wrote no CPU time (%q): %v", b, err)
	}
	share := float64(ns) / (secs * 1e9) * 100
	t.Logf("UI process CPU over %d s at 1 sample/s, 120x40: %.1f ms = %.2f%% of one core", secs, float64(ns)/1e6, share)
	if share >= 3 {
		t.Errorf("the UI costs %.2f%% of a core, want < 3%%", share)
	}
}
