package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fioReport is the part of fio --output-format=json this test reads.
type fioReport struct {
	Jobs []struct {
		Read struct {
			IOBytes   uint64 `json:"io_bytes"`
			TotalIOs  uint64 `json:"total_ios"`
			ShortIOs  uint64 `json:"short_ios"`
			DropedIOs uint64 `json:"drop_ios"`
		} `json:"read"`
	} `json:"jobs"`
}

// TestWatchFioIOUring: fio, a program nobody here wrote, reads a file
// with --ioengine=io_uring (batches of 32 READs per io_uring_enter). strace
// -c -f of the same run sees a handful of io_uring_enter calls and no read
// of the data at all; watch attributes every READ and every byte to fio:
// its io_uring_ops READ bytes and its file bytes copied to user memory
// equal fio's own io_bytes within 1%.
func TestWatchFioIOUring(t *testing.T) {
	straceOrSkip(t)
	fio, err := exec.LookPath("fio")
	if err != nil {
		t.Skip("fio is not installed (apt-get install fio): cannot run a third-party io_uring reader")
	}
	dir := t.TempDir()
	data, report := filepath.Join(dir, "data"), filepath.Join(dir, "fio.json")
	const size = 32 << 20
	if err := os.WriteFile(data, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	c := stoppedChild(t, fio, "--name=r", "--filename="+data, "--rw=read", "--bs=64k", "--size=32M",
		"--ioengine=io_uring", "--iodepth=32", "--iodepth_batch_submit=32", "--iodepth_batch_complete_min=32",
		"--thread", "--output-format=json", "--output="+report)
	pid := c.Process.Pid
	wait := startWatch(t, pid)
	finish := straceAttach(t, pid)
	if err := c.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	st := finish(false)
	recs := watchJSON(t, wait(false))
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("fio report: %v", err)
	}
	var rep fioReport
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Jobs) != 1 {
		t.Fatalf("fio report: %v (%d jobs)\n%s", err, len(rep.Jobs), b)
	}
	fioBytes, fioIOs := rep.Jobs[0].Read.IOBytes, rep.Jobs[0].Read.TotalIOs
	var readBytes, readOps, fileToUser, enters float64
	for _, r := range recs {
		if ops, ok := r["io_uring_ops"].(map[string]any); ok {
			if rd, ok := ops["READ"].(map[string]any); ok {
				readBytes += rd["bytes"].(float64)
				readOps += rd["completed"].(float64)
			}
		}
		if by, ok := r["copied_to_user_by_class"].(map[string]any); ok {
			fileToUser += by["file"].(float64)
		}
		if by, ok := r["syscalls_by_name"].(map[string]any); ok {
			if n, ok := by["io_uring_enter"].(float64); ok {
				enters += n
			}
		}
	}
	t.Logf("fio: %d bytes in %d reads; strace -c -f: %d io_uring_enter, %d read, %d pread64; watch: %.0f READs, %.0f bytes, %.0f file bytes copied to user, %.0f io_uring_enter",
		fioBytes, fioIOs, st["io_uring_enter"], st["read"], st["pread64"], readOps, readBytes, fileToUser, enters)
	if fioBytes != size {
		t.Fatalf("fio read %d bytes, asked for %d", fioBytes, size)
	}
	within := func(got float64) bool { return got >= 0.99*float64(fioBytes) && got <= 1.01*float64(fioBytes) }
	if !within(readBytes) {
		t.Errorf("watch: io_uring READ bytes %.0f, fio read %d (want within 1%%)", readBytes, fioBytes)
	}
	if !within(fileToUser) {
		t.Errorf("watch: file bytes copied to user %.0f, fio read %d (want within 1%%)", fileToUser, fioBytes)
	}
	if readOps != float64(fioIOs) {
		t.Errorf("watch: %.0f READs completed, fio made %d", readOps, fioIOs)
	}
	if enters != float64(st["io_uring_enter"]) {
		t.Errorf("io_uring_enter: watch %.0f, strace %d", enters, st["io_uring_enter"])
	}
	// The gap: strace sees the io_uring_enter calls only, a few per batch
	// of 32 reads, while the data moved by READ ops it cannot see.
	if st["io_uring_enter"]*8 > fioIOs {
		t.Errorf("strace saw %d io_uring_enter for %d reads: fio did not batch, the test shows no gap", st["io_uring_enter"], fioIOs)
	}
}

// TestWatchStraceGapUring: copyscope's own uring path (bench's raw loop,
// /proc counters so bench loads no BPF itself) moves 64 MiB while strace
// -c -f of the process sees a handful of io_uring_enter calls; watch
// counts every READ and SEND and their bytes, as the path's ledger does.
func TestWatchStraceGapUring(t *testing.T) {
	straceOrSkip(t)
	bin := buildBinary(t)
	out := filepath.Join(t.TempDir(), "bench.json")
	c := exec.Command("sh", "-c", `kill -STOP $$; exec "$@" >"$OUT"`, "sh", bin, "bench", "--paths", "uring",
		"--variants", "raw", "--mode", "proc", "--size", "64MiB", "--runs", "1", "--chunk", "64KiB", "--json")
	c.Env = append(os.Environ(), "OUT="+out)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	pid := c.Process.Pid
	if !waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && i+2 < len(b) && b[i+2] == 'T'
	}) {
		t.Fatal("the child did not stop itself")
	}
	wait := startWatch(t, pid)
	finish := straceAttach(t, pid)
	if err := c.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	st := finish(false)
	recs := watchJSON(t, wait(false))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ledger map[string]struct {
		Completed float64 `json:"completed"`
		Bytes     float64 `json:"bytes"`
	}
	for _, line := range strings.Split(string(b), "\n") {
		var r struct {
			Path, Variant string
			Ops           json.RawMessage `json:"io_uring_ops"`
		}
		if json.Unmarshal([]byte(line), &r) == nil && r.Path == "uring" && r.Variant == "raw" {
			if err := json.Unmarshal(r.Ops, &ledger); err != nil {
				t.Fatalf("bench record io_uring_ops: %v", err)
			}
		}
	}
	if ledger == nil {
		t.Fatalf("no uring raw record with io_uring_ops in bench's output:\n%s", b)
	}
	watched := map[string][2]float64{}
	for _, r := range recs {
		ops, _ := r["io_uring_ops"].(map[string]any)
		for op, v := range ops {
			m := v.(map[string]any)
			w := watched[op]
			watched[op] = [2]float64{w[0] + m["completed"].(float64), w[1] + m["bytes"].(float64)}
		}
	}
	t.Logf("strace -c -f: %d io_uring_enter; ledger %v; watch %v", st["io_uring_enter"], ledger, watched)
	for _, op := range []string{"READ", "SEND"} {
		l, w := ledger[op], watched[op]
		if l.Completed == 0 || w[0] != l.Completed || w[1] != l.Bytes {
			t.Errorf("%s: watch %v ops and bytes, the path's ledger %v", op, w, l)
		}
	}
	if n := float64(st["io_uring_enter"]); n == 0 || n*10 > ledger["READ"].Completed {
		t.Errorf("strace saw %v io_uring_enter for %v READs: want a handful (one per 2 MiB chain)", n, ledger["READ"].Completed)
	}
}
