//go:build linux && amd64

package probes

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BenchmarkEBPFSyscallCost measures what the probes add to one syscall on
// a thread: with no probe, with every program attached but the thread not
// watched (the in-kernel filter's one lookup), with the thread watched, and
// watched with syscalls counted at entry (two programs per syscall).
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
	for _, setup := range []string{"unprobed", "unwatched", "watched", "watched-count-at-entry"} {
		for _, o := range ops {
			b.Run(setup+"/"+o.name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				if setup != "unprobed" {
					p, err := OpenEBPF(EBPFOptions{CountAtEntry: setup == "watched-count-at-entry"})
					if err != nil {
						b.Fatalf("OpenEBPF: %v", err)
					}
					defer p.Close()
					if setup != "unwatched" {
						if err := p.AddThreads(unix.Gettid()); err != nil {
							b.Fatal(err)
						}
					} else if err := p.AddProcesses(os.Getppid()); err != nil {
						b.Fatal(err) // something else is watched, as in real use
					}
				}
				b.SetBytes(o.bytes)
				// The thread's own CPU clock, reported beside wall time:
				// on a shared machine it is far less disturbed by other
				// load than ns/op.
				var c0, c1 unix.Timespec
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c0)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					o.op()
				}
				b.StopTimer()
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c1)
				b.ReportMetric(float64(c1.Nano()-c0.Nano())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkEBPFProgramCost reports the kernel's own run-time statistics
// (kernel.bpf_stats_enabled, switched on for the benchmark) of sys_enter
// and sys_exit per syscall on this thread, watched and unwatched. The
// statistics add their own clock reads (tens of ns) to every run.
//
//	go test -run '^$' -bench EBPFProgramCost ./probes/
func BenchmarkEBPFProgramCost(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the benchmark as root")
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Skipf("BPF run-time statistics unavailable: %v", err)
	}
	defer stats.Close()
	f, err := os.Create(filepath.Join(b.TempDir(), "data"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.Write(buf); err != nil {
		b.Fatal(err)
	}
	for _, watched := range []bool{false, true} {
		for _, op := range []string{"getpid", "pread4k"} {
			name := "unwatched/" + op
			if watched {
				name = "watched/" + op
			}
			b.Run(name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				pr, err := OpenEBPF(EBPFOptions{SkipOptional: true})
				if err != nil {
					b.Fatalf("OpenEBPF: %v", err)
				}
				defer pr.Close()
				if watched {
					if err := pr.AddThreads(unix.Gettid()); err != nil {
						b.Fatal(err)
					}
				}
				progs := map[string]*ebpf.Program{}
				for _, c := range pr.(*ebpfProbe).colls {
					for n, p := range c.Programs {
						progs[n] = p
					}
				}
				snap := func() map[string]*ebpf.ProgramStats {
					m := map[string]*ebpf.ProgramStats{}
					for _, n := range []string{"sys_enter", "sys_exit"} {
						if progs[n] == nil {
							continue // sys_enter is loaded only with CountAtEntry
						}
						s, err := progs[n].Stats()
						if err != nil {
							b.Fatalf("stats of %s: %v", n, err)
						}
						m[n] = s
					}
					return m
				}
				before := snap()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if op == "getpid" {
						unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
					} else {
						unix.Pread(int(f.Fd()), buf, 0)
					}
				}
				b.StopTimer()
				after := snap()
				for n, a := range after {
					runs := a.RunCount - before[n].RunCount
					if runs > 0 {
						b.ReportMetric(float64(a.Runtime-before[n].Runtime)/float64(runs), n+"-ns/run")
					}
				}
			})
		}
	}
}
