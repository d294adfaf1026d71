package demo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
	"github.com/copyscope/copyscope/tui"
)

// requireEBPF skips, saying why, when this process cannot load the probes.
func requireEBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF + CAP_PERFMON) for the eBPF probes; run as root")
	}
	p, err := probes.OpenEBPF(probes.EBPFOptions{})
	if err != nil {
		t.Skipf("eBPF probes do not load here: %v", err)
	}
	p.Close()
}

func testConfig(t *testing.T, probe string) Config {
	cfg := DefaultConfig()
	cfg.Probe = probe
	cfg.Rate = 100e6
	cfg.Preload = 16 << 20
	cfg.Interval = 500 * time.Millisecond
	cfg.DataDir = t.TempDir()
	return cfg
}

// collect reads n samples after skipping the first (warm-up) one.
func collect(t *testing.T, d *Demo, n int) []tui.Sample {
	t.Helper()
	var out []tui.Sample
	timeout := time.After(time.Duration(n+4) * 2 * time.Second)
	for len(out) < n+1 {
		select {
		case s, ok := <-d.Samples():
			if !ok {
				t.Fatalf("samples closed after %d", len(out))
			}
			out = append(out, s)
		case <-timeout:
			t.Fatalf("only %d samples before the timeout", len(out))
		}
	}
	return out[1:]
}

// sum adds the records of one subject over samples.
func sum(ss []tui.Sample, path string) (del, toUser, fromUser, zc, zcCopied, consCtx uint64) {
	v := func(p *uint64) uint64 {
		if p == nil {
			return 0
		}
		return *p
	}
	for _, s := range ss {
		for _, r := range s.Records {
			if r.Subject != path {
				continue
			}
			del += v(r.DeliveredBytes)
			toUser += v(r.CopiedToUserBytes)
			fromUser += v(r.CopiedFromUserBytes)
			zc += v(r.ZerocopyBytes)
			zcCopied += v(r.ZerocopyCopiedBytes)
		}
		if c, ok := s.Consumers[path]; ok {
			consCtx += v(c.CtxSwitchesVol) + v(c.CtxSwitchesInvol)
		}
	}
	return
}

// TestDemoPhysics runs the demo in fair mode with the eBPF probes and
// checks the expected physics per path: about 2 CPU copies per delivered
// byte for read, 1 for mmap, 0 for sendfile and splice, and kernel-copied
// MSG_ZEROCOPY bytes on loopback; consumers are counted too.
func TestDemoPhysics(t *testing.T) {
	requireEBPF(t)
	d, err := Start(context.Background(), testConfig(t, "ebpf"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.ProbeMode() != metrics.ModeEBPF {
		t.Fatalf("probe mode %s, want ebpf", d.ProbeMode())
	}
	ss := collect(t, d, 4)
	want := map[string][2]float64{"read": {1.9, 2.1}, "mmap": {0.9, 1.1}, "sendfile": {0, 0.05}, "splice": {0, 0.05}, "zerocopy": {0, 0.05},
		"uring": {1.9, 2.1}, "uring-splice": {0, 0.05}, "uring-zc": {0, 0.05}}
	for _, p := range d.cfg.Paths {
		del, toUser, fromUser, zc, zcCopied, consCtx := sum(ss, p)
		if del < 10e6 {
			t.Errorf("%s delivered only %d bytes in %d samples at 100 MB/s", p, del, len(ss))
			continue
		}
		amp := float64(toUser+fromUser) / float64(del)
		if w := want[p]; amp < w[0] || amp > w[1] {
			t.Errorf("%s: %.3f CPU copies per delivered byte, want %.2f..%.2f", p, amp, w[0], w[1])
		}
		if (p == "zerocopy" || p == "uring-zc") && (zc == 0 || zcCopied == 0) {
			t.Errorf("zerocopy: %d bytes sent with MSG_ZEROCOPY, %d reported copied; want both > 0 on loopback", zc, zcCopied)
		}
		if consCtx == 0 {
			t.Errorf("%s: the consumer thread shows no context switches", p)
		}
		t.Logf("%-8s delivered %4.0f MB, %.3f copies/byte, consumer switches %d", p, float64(del)/1e6, amp, consCtx)
	}
}

// TestDemoChunkAndModeKeys changes the chunk (consumers reconnect to new
// listeners) and switches to race mode; paths keep delivering.
func TestDemoChunkAndModeKeys(t *testing.T) {
	requireEBPF(t)
	cfg := testConfig(t, "ebpf")
	cfg.RaceSlot = 700 * time.Millisecond
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	collect(t, d, 1)
	d.Act(tui.Action{Kind: tui.ActionChunk, Bytes: 1 << 20})
	ss := collect(t, d, 3)
	for _, p := range cfg.Paths {
		if del, _, _, _, _, _ := sum(ss[1:], p); del == 0 {
			t.Errorf("%s delivers nothing after the chunk change", p)
		}
	}
	d.Act(tui.Action{Kind: tui.ActionMode, Value: ModeRace})
	ss = collect(t, d, 8)
	raced := 0
	for _, p := range cfg.Paths {
		if del, _, _, _, _, _ := sum(ss, p); del > 0 {
			raced++
		}
	}
	if raced < 2 {
		t.Errorf("race mode: only %d paths ran in 4 s with 0.7 s turns", raced)
	}
	for _, s := range ss {
		active := 0
		for _, r := range s.Records {
			if r.DeliveredBytes != nil && *r.DeliveredBytes > 1e6 {
				active++
			}
		}
		if active > 2 { // a turn can end inside an interval: at most two share one
			t.Errorf("race mode: %d paths delivered in one interval (%s)", active, s.Status)
		}
	}
}

// TestDemoProcModeAndCleanup runs without eBPF (the /proc sampler) and
// checks throughput still shows, then that Close removes the temp dir.
func TestDemoProcModeAndCleanup(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := testConfig(t, "proc")
	cfg.DataDir = ""
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.ProbeMode() != metrics.ModeProc {
		t.Errorf("probe mode %s, want proc", d.ProbeMode())
	}
	ss := collect(t, d, 2)
	for _, p := range cfg.Paths {
		if del, _, _, _, _, _ := sum(ss, p); del == 0 {
			t.Errorf("%s: no delivered bytes in proc mode", p)
		}
	}
	for _, s := range ss {
		for _, r := range s.Records {
			if r.CopiedToUserBytes != nil {
				t.Errorf("%s: proc mode reports copies (%d), which it cannot measure", r.Subject, *r.CopiedToUserBytes)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(tmp, "copyscope-demo-*"))
	if len(dirs) != 1 {
		t.Errorf("temporary data dirs while running: %v, want one", dirs)
	}
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v, want < 1 s", took)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "copyscope-demo-*")); len(left) > 0 {
		t.Errorf("temporary data left after Close: %v", left)
	}
}

func TestControlRace(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newControl([]string{"a", "b", "c"}, ModeFair, 1e6, 65536, 1<<20, time.Second)
	c.setMode(ModeRace, now)
	if c.racing != "a" {
		t.Fatalf("race starts with %q, want a", c.racing)
	}
	c.setEnabled(map[string]bool{"a": true, "b": false, "c": true}, now)
	c.tick(now.Add(500 * time.Millisecond))
	if c.racing != "a" {
		t.Errorf("turn ended early: %q", c.racing)
	}
	c.tick(now.Add(time.Second))
	if c.racing != "c" {
		t.Errorf("after a: %q, want c (b is disabled)", c.racing)
	}
	c.mu.Lock()
	if c.runnableLocked("a") || !c.runnableLocked("c") {
		t.Errorf("in race only the racing path may run")
	}
	c.mu.Unlock()
	c.setEnabled(map[string]bool{"a": true, "b": true, "c": false}, now)
	if c.racing != "a" {
		t.Errorf("disabling the racer hands over to %q, want a", c.racing)
	}
	c.stop()
	if _, ok := c.wait("b"); ok {
		t.Errorf("wait after stop must report stopped")
	}
}

// TestDemoRcvLowat runs consumers with SO_RCVLOWAT 256 KiB: every path
// must keep delivering (a mark above the tail of a response hangs a
// consumer, which this caught).
func TestDemoRcvLowat(t *testing.T) {
	cfg := testConfig(t, "proc")
	cfg.RcvLowat = 256 << 10
	cfg.Paths = []string{"read", "sendfile"}
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, s := range collect(t, d, 4) {
		for _, r := range s.Records {
			if r.DeliveredBytes == nil || *r.DeliveredBytes == 0 {
				t.Errorf("sample %d: %s delivered nothing with SO_RCVLOWAT %d", i, r.Subject, cfg.RcvLowat)
			}
		}
	}
}

// TestStartFailureCleansUp: a Start that fails half-way (its context ends
// during the preload) returns the error, leaves no temporary data and does
// not panic.
func TestStartFailureCleansUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := testConfig(t, "proc")
	cfg.DataDir = ""
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := Start(ctx, cfg)
	if err == nil {
		d.Close()
		t.Fatal("Start with a cancelled context succeeded")
	}
	if d != nil {
		t.Errorf("failed Start returned a demo")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "copyscope-demo-*")); len(left) > 0 {
		t.Errorf("failed Start left temporary data: %v", left)
	}
}
