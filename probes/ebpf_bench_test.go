//go:build linux && amd64

package probes

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkEBPFSyscallCost measures what the probes add to one syscall on
// a thread: with no probe, with every program attached but the thread not
// watched (the in-kernel filter's one lookup), and with the thread watched.
// Compare the ns/op of the sub-benchmarks of one run side by side:
//
//	go test -run '^$' -bench EBPFSyscallCost -count 5 ./probes/
func BenchmarkEBPFSyscallCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the benchmark as root")
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "data"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.Write(buf); err != nil {
		b.Fatal(err)
	}
	fd := int(f.Fd())
	ops := []struct {
		name  string
		bytes int64
		op    func()
	}{
		{"getpid", 0, func() { unix.Syscall(unix.SYS_GETPID, 0, 0, 0) }},
		{"pread4k", 4096, func() { unix.Pread(fd, buf, 0) }},
	}
	for _, setup := range []string{"unprobed", "unwatched", "watched"} {
		for _, o := range ops {
			b.Run(setup+"/"+o.name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				if setup != "unprobed" {
					p, err := OpenEBPF(EBPFOptions{})
					if err != nil {
						b.Fatalf("OpenEBPF: %v", err)
					}
					defer p.Close()
					if setup == "watched" {
						if err := p.AddThreads(unix.Gettid()); err != nil {
							b.Fatal(err)
						}
					} else if err := p.AddProcesses(os.Getppid()); err != nil {
						b.Fatal(err) // something else is watched, as in real use
					}
				}
				b.SetBytes(o.bytes)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					o.op()
				}
			})
		}
	}
}
