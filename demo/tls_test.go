package demo

import (
	"context"
	"testing"

	"github.com/copyscope/copyscope/metrics"
)

// TestDemoTLS: the tls path runs beside read and sendfile (a TLS
// listener, consumers that decrypt) and costs what read costs in copies:
// 2 per delivered byte (pread into user memory, write of each sealed
// record from it), against sendfile's 0.
func TestDemoTLS(t *testing.T) {
	requireEBPF(t)
	cfg := testConfig(t, "ebpf")
	cfg.Paths = []string{"read", "sendfile", "tls"}
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.ProbeMode() != metrics.ModeEBPF {
		t.Fatalf("probe mode %s, want ebpf", d.ProbeMode())
	}
	ss := collect(t, d, 4)
	want := map[string][2]float64{"read": {1.9, 2.1}, "sendfile": {0, 0.05}, "tls": {1.9, 2.1}}
	for _, p := range cfg.Paths {
		del, toUser, fromUser, _, _, _ := sum(ss, p)
		if del < 10e6 {
			t.Errorf("%s delivered only %d bytes", p, del)
			continue
		}
		amp := float64(toUser+fromUser) / float64(del)
		if w := want[p]; amp < w[0] || amp > w[1] {
			t.Errorf("%s: %.3f CPU copies per delivered byte, want %.2f..%.2f", p, amp, w[0], w[1])
		}
		t.Logf("%-8s delivered %4.0f MB, %.3f copies/byte", p, float64(del)/1e6, amp)
	}
}
