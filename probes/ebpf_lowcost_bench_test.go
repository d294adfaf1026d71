//go:build linux && amd64

package probes

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkEBPFCostModes measures, per operation of a watched data thread,
// what each probe set adds: nothing attached, the floor (an empty sys_exit
// program: the kernel's price for any syscall tracepoint), the exact
// probes, and the low-cost probes (no syscall tracepoint). The ops are a
// data path's building blocks: a 4 KiB and a 64 KiB pread from a cached
// file and a send of the same size on a loopback TCP socket. Compare the
// cpu-ns/op (the thread's own CPU clock) of one run side by side:
//
//	go test -run '^$' -bench EBPFCostModes -count 5 ./probes/
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
	for _, setup := range []string{"unprobed", "floor", "exact", "low"} {
		for _, o := range ops {
			b.Run(setup+"/"+o.name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				switch setup {
				case "floor":
					fl, err := AttachFloor()
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
				}
				b.SetBytes(int64(o.bytes))
				var c0, c1 unix.Timespec
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c0)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					o.run(o.bytes)
				}
				b.StopTimer()
				unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &c1)
				b.ReportMetric(float64(c1.Nano()-c0.Nano())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func sizeName(n int) string {
	if n >= 65536 {
		return "64k"
	}
	return "4k"
}

// loopbackSender returns the fd of a connected loopback TCP socket whose
// peer a goroutine drains until the benchmark ends.
func loopbackSender(b *testing.B) int {
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
