package metrics

import (
	"testing"
	"time"
)

// TestDerived checks the derived values against the arithmetic of a
// hand-built interval: 2 s, 100 MB delivered, 0.5 s of CPU, 3000 syscalls.
func TestDerived(t *testing.T) {
	d := Counters{Measured: FAll, DeliveredBytes: 100e6, Syscalls: 3000, CPUNs: 5e8,
		CtxVoluntary: 40, CtxInvoluntary: 4, ZerocopyBytes: 1000, ZerocopyCopiedBytes: 250}
	d.CopiedFromUser[ClassSocket] = 50e6
	d.ReceivedBytes, d.CopiedToUser[ClassSocket] = 1e6, 1e6
	r := FromDelta(time.Unix(0, 0), 2*time.Second, ModeEBPF, Subject{KindPath, "read"}, d)
	for _, tc := range []struct {
		name string
		f    func() (float64, bool)
		want float64
	}{
		{"syscalls/s", func() (float64, bool) { return r.PerSecond(r.Syscalls) }, 1500},
		{"cpu %", r.CPUPercent, 25},
		{"cpu s/GB", r.CPUSecondsPerGB, 5},
		{"syscalls/MB", r.SyscallsPerMB, 30},
		{"copies/sent B", r.SentCopiesPerByte, 0.5},
		{"copies/received B", r.ReceivedCopiesPerByte, 1},
		{"zerocopy copied %", r.ZerocopyCopiedPercent, 25},
		{"ctx vol/s", func() (float64, bool) { v, _, ok := r.CtxPerSecond(); return v, ok }, 20},
		{"ctx invol/s", func() (float64, bool) { _, v, ok := r.CtxPerSecond(); return v, ok }, 2},
	} {
		got, ok := tc.f()
		if !ok || got != tc.want {
			t.Errorf("%s = %v (ok %v), want %v", tc.name, got, ok, tc.want)
		}
	}

	absent := FromDelta(time.Unix(0, 0), 0, ModeProc, Subject{KindThread, "t"}, Counters{Measured: FCPU | FSyscalls})
	for name, f := range map[string]func() (float64, bool){
		"cpu % without an interval":    absent.CPUPercent,
		"syscalls/MB without delivery": absent.SyscallsPerMB,
		"copies/sent B without copies": absent.SentCopiesPerByte,
		"copies/received B, nothing":   absent.ReceivedCopiesPerByte,
		"zerocopy without zerocopy":    absent.ZerocopyCopiedPercent,
		"cpu s/GB without delivery":    absent.CPUSecondsPerGB,
	} {
		if v, ok := f(); ok {
			t.Errorf("%s = %v, want absent", name, v)
		}
	}
}
