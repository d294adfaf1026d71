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

// TestEBPFDutySampling: the sampled low-cost mode (attached 1/4 of every
// 40 ms, counts weighted by 4) estimates a steady sender's bytes, which
// the workload counts itself, within 10%, and its note says how much of
// the time it was attached.
func TestEBPFDutySampling(t *testing.T) {
	openEBPFOrSkip(t).Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sock := loopbackSender(t)
	pr, err := OpenEBPF(EBPFOptions{LowCost: true, Duty: 4, DutyPeriod: 40 * time.Millisecond})
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
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
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
		if strings.HasPrefix(n, "sampled (--duty 4)") {
			note = n
		}
	}
	t.Log(note)
	if !strings.Contains(note, "attached") {
		t.Errorf("no sampling note with the attached share in %q", p.Notes())
	}
}
