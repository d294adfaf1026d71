package transfer

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkPath moves a 64 MiB page-cached file to a loopback receiver that
// discards it, per path and chunk size; b.SetBytes makes the MB/s column
// the path's throughput.
func BenchmarkPath(b *testing.B) {
	const size = 64 << 20
	f := writeTempFile(b, b.TempDir(), "bench.log", size, 11)
	for _, name := range Names() {
		for _, chunk := range testChunks {
			b.Run(fmt.Sprintf("%s/%d", name, chunk), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				done := make(chan error, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						done <- err
						return
					}
					_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 1<<20))
					c.Close()
					done <- err
				}()
				ta := ln.Addr().(*net.TCPAddr)
				sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := unix.Connect(sock, &unix.SockaddrInet4{Port: ta.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
					b.Fatal(err)
				}
				p, err := New(name, Options{Chunk: chunk})
				if err != nil {
					b.Fatal(err)
				}
				parts := []Part{{Span: Span{Fd: int(f.Fd()), Off: 0, Len: size}}}
				b.SetBytes(size)
				b.ResetTimer()
				for b.Loop() {
					if _, err := p.Send(sock, parts); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if err := p.Close(); err != nil {
					b.Fatal(err)
				}
				unix.Close(sock)
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
