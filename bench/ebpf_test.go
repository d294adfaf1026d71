package bench

import (
	"context"
	"os"
	"testing"

	"github.com/copyscope/copyscope/probes"
)

// openEBPFOrSkip opens the eBPF probe or skips the test saying why.
func openEBPFOrSkip(t *testing.T) probes.Probe {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON); run the tests as root")
	}
	p, err := probes.OpenEBPF(probes.EBPFOptions{})
	if err != nil {
		t.Skipf("eBPF probes unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestRunEBPFSyscallArithmetic runs the sweep with the eBPF probe behind
// the ThreadCounters seam and checks each data thread's syscalls, counted
// by the kernel, against the path's arithmetic for the bytes it moved, in
// both variants (the broker's data thread too, whose ledger bench cannot
// see).
func TestRunEBPFSyscallArithmetic(t *testing.T) {
	p := openEBPFOrSkip(t)
	const chunk = 64 << 10
	res, err := Run(context.Background(), Config{Size: 32 << 20, Runs: 1, Chunk: chunk, DataDir: t.TempDir(), Counters: ProbeCounters(p)})
	if err != nil {
		t.Fatal(err)
	}
	perChunk := map[string]map[string]float64{
		"read":     {"pread64": 1, "write": 1},
		"mmap":     {"write": 1},
		"sendfile": {"sendfile": 1},
		"splice":   {"splice": 2},
		"zerocopy": {"sendmsg": 1},
	}
	// The io_uring paths make no syscall per chunk: their ops, counted by
	// the io_uring tracepoints, follow the arithmetic instead.
	opsPerChunk := map[string]map[string]float64{
		"uring":        {"READ": 1, "SEND": 1},
		"uring-splice": {"SPLICE": 2},
		"uring-zc":     {"SEND_ZC": 1},
	}
	for _, r := range res {
		if r.Syscalls == nil || r.SyscallsByName == nil || r.DeliveredBytes == nil {
			t.Errorf("%s/%s: no syscall counts from the eBPF probe", r.Path, r.Variant)
			continue
		}
		chunks := float64(*r.DeliveredBytes) / chunk
		for call, k := range perChunk[r.Path] {
			got, want := float64(r.SyscallsByName[call]), k*chunks
			// A few per response and per segment, and short writes.
			if got < want*0.99 || got > want*1.05+64 {
				t.Errorf("%s/%s: %s counted %v times by the kernel, arithmetic says %.0f for %d bytes", r.Path, r.Variant, call, got, want, *r.DeliveredBytes)
			}
		}
		for op, k := range opsPerChunk[r.Path] {
			got, want := float64(r.UringOps[op].Completed), k*chunks
			if got < want*0.99 || got > want*1.05+64 || r.UringOps[op].Failed != 0 {
				t.Errorf("%s/%s: io_uring %s completed %v times (%d failed) by the kernel, arithmetic says %.0f for %d bytes", r.Path, r.Variant, op, got, r.UringOps[op].Failed, want, *r.DeliveredBytes)
			}
		}
		if r.Mode != "ebpf" || r.Estimate {
			t.Errorf("%s/%s: mode %q estimate %v, want exact ebpf", r.Path, r.Variant, r.Mode, r.Estimate)
		}
		t.Logf("%s/%s: %v %v", r.Path, r.Variant, r.SyscallsByName, r.UringOps)
	}
}
