//go:build linux && amd64

package probes

import (
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEBPFDutySampling: the sampled low-cost mode (attached half of every
// 200 ms, counts weighted by 2: 15 windows in the 3 s of sending)
// estimates a steady sender's bytes, which the workload counts itself,
// within 10%, and its note says how much of the time it was attached.
// Short periods bias the estimate up: attaching and detaching (text
// patching, RCU waits) slow the sender while the gate is closed, so it
// sends more while it is open (+11% to +14% measured with 10 ms windows
// every 20-40 ms under -race; the default period is 1 s).
func TestEBPFDutySampling(t *testing.T) {
	openEBPFOrSkip(t).Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sock := loopbackSender(t)
	pr, err := OpenEBPF(EBPFOptions{LowCost: true, Duty: 2, DutyPeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := pr.(*ebpfProbe)
	defer p.Close()
	tid := unix.Gettid()
	if err := p.AddThreads(tid); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var sent int64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		n, err := unix.Write(sock, buf)
		if err != nil {
			t.Fatal(err)
		}
		sent += int64(n)
		time.Sleep(20 * time.Microsecond) // steady, not in bursts
	}
	r, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	got := float64(r.Threads[tid].Counters.DeliveredBytes)
	rel := math.Abs(got-float64(sent)) / float64(sent)
	t.Logf("sent %d bytes, sampled estimate %.0f (error %.2f%%)", sent, got, 100*rel)
	if rel > 0.10 {
		t.Errorf("sampled estimate %.0f of %d sent bytes: error %.1f%% above 10%%", got, sent, 100*rel)
	}
	var note string
	for _, n := range p.Notes() {
		if strings.HasPrefix(n, "sampled (--duty 2)") {
			note = n
		}
	}
	t.Log(note)
	if !strings.Contains(note, "attached") {
		t.Errorf("no sampling note with the attached share in %q", p.Notes())
	}
}
