package bench

import (
	"context"
	"testing"

	"github.com/copyscope/copyscope/broker/transfer"
)

// TestWorkerCPUFolded: uring-splice's SPLICEs run on io_uring worker
// threads, whose CPU is added to the data thread's and reported as
// worker_cpu_ns, in both variants; a path without workers reports none.
func TestWorkerCPUFolded(t *testing.T) {
	if err := transfer.Supported("uring-splice"); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	res, err := Run(context.Background(), Config{Size: 16 << 20, Runs: 1, Chunk: 64 << 10, DataDir: t.TempDir(), Paths: []string{"uring-splice", "read"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.CPUNs == nil {
			t.Fatalf("%s/%s: no cpu_ns", r.Path, r.Variant)
		}
		switch {
		case r.Path == "read" && r.WorkerCPUNs != nil:
			t.Errorf("%s/%s: worker_cpu_ns %d from a path without io_uring workers", r.Path, r.Variant, *r.WorkerCPUNs)
		case r.Path == "uring-splice" && (r.WorkerCPUNs == nil || *r.WorkerCPUNs == 0 || *r.WorkerCPUNs > *r.CPUNs):
			t.Errorf("%s/%s: worker_cpu_ns %v of cpu_ns %d, want a positive part of it", r.Path, r.Variant, r.WorkerCPUNs, *r.CPUNs)
		}
		if r.WorkerCPUNs != nil {
			t.Logf("%s/%s: cpu_ns %d, of it io_uring workers %d", r.Path, r.Variant, *r.CPUNs, *r.WorkerCPUNs)
		}
	}
}
