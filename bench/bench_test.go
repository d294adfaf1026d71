package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
)

// TestRunSmall runs the whole sweep on a small log: every path, both
// variants, CRC verification on, and checks the records' shape.
func TestRunSmall(t *testing.T) {
	var progress bytes.Buffer
	cfg := Config{Size: 24 << 20, Runs: 2, Verify: true, DataDir: t.TempDir(), Progress: &progress, FetchMaxBytes: 5 << 20}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if want := 2 * 2 * len(transfer.Names()); len(res) != want {
		t.Fatalf("%d results, want %d", len(res), want)
	}
	for _, r := range res {
		if r.ThroughputBytesPerS <= 0 || r.Seconds <= 0 || r.DeliveredBytes == nil || *r.DeliveredBytes < 24<<20 {
			t.Errorf("%s/%s run %d: nothing measured: %+v", r.Path, r.Variant, r.Run, r)
		}
		if r.CPUNs == nil || r.CtxSwitchesVol == nil || r.ConsumerCtxVoluntary == nil {
			t.Errorf("%s/%s: missing thread counters", r.Path, r.Variant)
		}
		if r.Path == "zerocopy" && r.Variant == "raw" && (r.ZerocopyCopiedBytes == nil || *r.ZerocopyCopiedBytes != *r.ZerocopyBytes) {
			t.Errorf("zerocopy raw on loopback: copied %v of %v bytes, want all", r.ZerocopyCopiedBytes, r.ZerocopyBytes)
		}
		b, _ := json.Marshal(r)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"path", "variant", "run", "chunk", "seconds", "throughput_bytes_per_s", "delivered_bytes", "cpu_ns"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s/%s JSON lacks %q: %s", r.Path, r.Variant, k, b)
			}
		}
	}
	t.Log(progress.String())
}

// TestRunRcvLowat: with SO_RCVLOWAT larger than a response's tail the
// consumer must not wait for bytes that never come (it asks for at most
// what the response still holds).
func TestRunRcvLowat(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), Config{Size: 8 << 20, Runs: 1, RcvLowat: 256 << 10, FetchMaxBytes: 1 << 20,
			Paths: []string{"sendfile", "read"}, DataDir: t.TempDir(), Verify: true})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bench with --rcvlowat 256KiB did not finish in 60s: the consumer waits for bytes past a response")
	}
}

// TestCongestion: both variants' sending sockets get one congestion
// control: cubic by default, the host's with "system", and an unknown
// name is an error before anything runs.
func TestCongestion(t *testing.T) {
	c := Config{Congestion: "no-such-congestion-control"}
	if err := c.normalize(); err == nil {
		t.Fatal("normalize accepted an unknown TCP congestion control")
	}
	c = Config{Congestion: SystemCongestion}
	if err := c.normalize(); err != nil || c.congestion() != "" || c.congestionName() != hostCongestion() {
		t.Fatalf("system: err %v, set %q, name %q", err, c.congestion(), c.congestionName())
	}
	c = Config{}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	if checkCongestion(DefaultCongestion) == nil && c.congestion() != DefaultCongestion {
		t.Fatalf("default: sets %q, want %q", c.congestion(), DefaultCongestion)
	}
	res, err := Run(context.Background(), Config{Size: 4 << 20, Runs: 1, Paths: []string{"read"}, Congestion: "reno", DataDir: t.TempDir(), FetchMaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.TCPCongestion != "reno" {
			t.Errorf("%s/%s: tcp_congestion %q, want reno", r.Path, r.Variant, r.TCPCongestion)
		}
	}
}

// TestCongestionUnprivileged: without CAP_NET_ADMIN the default congestion
// control falls back to the host's with a note, instead of failing. The
// check runs in a child whose capability bounding set lacks CAP_NET_ADMIN
// (setpriv), and the kernel's own refusal of cubic there is the ground
// truth that the privilege is really gone.
func TestCongestionUnprivileged(t *testing.T) {
	if os.Getenv("COPYSCOPE_CC_CHILD") == "1" {
		err := checkCongestion(DefaultCongestion)
		c := Config{}
		nerr := c.normalize()
		fmt.Printf("check=%v\nnormalize=%v\nset=%q\nname=%s\nnote=%s\n", err, nerr, c.congestion(), c.congestionName(), c.congestionNote)
		dir, _ := os.MkdirTemp("", "copyscope-cc-")
		defer os.RemoveAll(dir)
		res, rerr := Run(context.Background(), Config{Size: 4 << 20, Runs: 1, Paths: []string{"read"}, DataDir: dir, FetchMaxBytes: 1 << 20})
		noted := 0
		for _, r := range res {
			if slices.Contains(r.Notes, c.congestionNote) && r.TCPCongestion == hostCongestion() {
				noted++
			}
		}
		var table bytes.Buffer
		_ = WriteTable(&table, Summarize(res), false)
		fmt.Printf("run=%v\nnoted=%d/%d\ntable_notes=%d\n", rerr, noted, len(res), strings.Count(table.String(), "TCP congestion control cubic not set"))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop CAP_NET_ADMIN from a child with setpriv")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop CAP_NET_ADMIN")
	}
	allowed, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
	if slices.Contains(strings.Fields(string(allowed)), DefaultCongestion) {
		t.Skipf("%s is in net.ipv4.tcp_allowed_congestion_control (%s): no privilege needed, nothing to fall back from", DefaultCongestion, strings.TrimSpace(string(allowed)))
	}
	cmd := exec.Command(setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin", os.Args[0], "-test.run=^TestCongestionUnprivileged$", "-test.v")
	cmd.Env = append(os.Environ(), "COPYSCOPE_CC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child without CAP_NET_ADMIN: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"check=set TCP congestion control \"cubic\": operation not permitted", "normalize=<nil>", "set=\"\"", "name=" + hostCongestion(), "note=TCP congestion control cubic not set (operation not permitted", "run=<nil>", "noted=2/2", "table_notes=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("child output lacks %q:\n%s", want, got)
		}
	}
}
