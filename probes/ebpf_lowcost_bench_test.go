//go:build linux && amd64

package probes

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkEBPFCostModes measures, per operation of a watched data thread,
// what each probe set adds: nothing attached, the floor (an empty sys_exit
// program: the kernel's price for any syscall tracepoint), the exact
// probes, the low-cost floor (empty programs on the low-cost mode's
// tracepoints) and the low-cost probes (no syscall tracepoint). The ops are a
// data path's building blocks: a 4 KiB and a 64 KiB pread from a cached
// file and a send of the same size on a loopback TCP socket. Compare the
// cpu-ns/op (the thread's own CPU clock) of one run side by side:
//
//	go test -run '^$' -bench EBPFCostModes -count 5 ./probes/
//
// With sysctl kernel.bpf_stats_enabled=1 it also reports prog-ns/op, the
// probes' own programs' run time per operation (all programs summed).
func BenchmarkEBPFCostModes(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the benchmark as root")
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "data"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 65536)
	if _, err := f.Write(buf); err != nil {
		b.Fatal(err)
	}
	fd := int(f.Fd())
	sock := loopbackSender(b)
	type op struct {
		name  string
		bytes int
		run   func(n int)
	}
	var ops []op
	for _, n := range []int{4096, 65536} {
		ops = append(ops,
			op{"pread" + sizeName(n), n, func(n int) { unix.Pread(fd, buf[:n], 0) }},
			op{"send" + sizeName(n), n, func(n int) { unix.Write(sock, buf[:n]) }})
	}
	for _, setup := range []string{"unprobed", "floor", "exact", "lowfloor", "low"} {
		for _, o := range ops {
			b.Run(setup+"/"+o.name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var cost CostReporter
				switch setup {
				case "floor", "lowfloor":
					attach := AttachFloor
					if setup == "lowfloor" {
						attach = AttachLowFloor
					}
					fl, err := attach()
					if err != nil {
						b.Fatal(err)
					}
					defer fl.Close()
				case "exact", "low":
					p, err := OpenEBPF(EBPFOptions{LowCost: setup == "low", SkipOptional: setup == "exact"})
					if err != nil {
						b.Fatalf("OpenEBPF: %v", err)
					}
					defer p.Close()
					if err := p.AddThreads(unix.Gettid()); err != nil {
						b.Fatal(err)
					}
					cost, _ = p.(CostReporter)
				}
				b.SetBytes(int64(o.bytes))
				var c0, c1 unix.Timespec
				p0 := programTime(cost)
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c0)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					o.run(o.bytes)
				}
				b.StopTimer()
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c1)
				b.ReportMetric(float64(c1.Nano()-c0.Nano())/float64(b.N), "cpu-ns/op")
				if p1 := programTime(cost); p1 >= 0 && p0 >= 0 {
					b.ReportMetric(float64(p1-p0)/float64(b.N), "prog-ns/op")
				}
			})
		}
	}
}

// programTime is the summed run time of a probe's programs, or -1 when
// the kernel does not collect it (sysctl kernel.bpf_stats_enabled=1 turns
// it on; the collection itself adds two clock reads per program run, so
// read prog-ns/op, not cpu-ns/op, from such a run).
func programTime(c CostReporter) time.Duration {
	if c == nil {
		return -1
	}
	var t time.Duration
	for _, p := range c.Cost().Programs {
		if !p.Measured {
			return -1
		}
		t += p.RunTime
	}
	return t
}

func sizeName(n int) string {
	if n >= 65536 {
		return "64k"
	}
	return "4k"
}

// loopbackSender returns the fd of a connected loopback TCP socket whose
// peer a goroutine drains until the benchmark ends.
func loopbackSender(b testing.TB) int {
	b.Helper()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	addr := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(ln, addr); err != nil {
		b.Fatal(err)
	}
	unix.Listen(ln, 1)
	sa, _ := unix.Getsockname(ln)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Connect(s, sa); err != nil {
		b.Fatal(err)
	}
	peer, _, err := unix.Accept(ln)
	if err != nil {
		b.Fatal(err)
	}
	unix.Close(ln)
	r := os.NewFile(uintptr(peer), "peer")
	go io.Copy(io.Discard, r)
	b.Cleanup(func() {
		unix.Close(s)
		r.Close()
	})
	return s
}
