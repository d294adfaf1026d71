package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
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
