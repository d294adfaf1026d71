package transfer

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/testca"
)

// TestTLSPathHash: framing and spans across two files go through the tls
// path to a crypto/tls client trusting a test CA, which decrypts exactly
// the bytes on disk; the ledger has a pread64 per chunk, ciphertext bytes
// above the plaintext, and the request bytes the path read decrypted.
func TestTLSPathHash(t *testing.T) {
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range testChunks {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			dir := t.TempDir()
			f1 := writeTempFile(t, dir, "00.log", 3<<20+123, 1)
			f2 := writeTempFile(t, dir, "01.log", 1<<20+7, 2)
			files := map[int]*os.File{int(f1.Fd()): f1, int(f2.Fd()): f2}
			parts := []Part{{Bytes: []byte("hdr")}, {Span: Span{Fd: int(f1.Fd()), Off: 99, Len: 3<<20 + 24}},
				{Bytes: []byte("mid")}, {Span: Span{Fd: int(f2.Fd()), Len: 1<<20 + 7}}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type res struct {
				sum [32]byte
				n   int64
				err error
			}
			done := make(chan res, 1)
			go func() { // the client: says hello, then hashes what it gets
				c, err := tls.Dial("tcp", ln.Addr().String(), ca.ClientConfig())
				if err != nil {
					done <- res{err: err}
					return
				}
				defer c.Close()
				if _, err := c.Write([]byte("request")); err != nil {
					done <- res{err: err}
					return
				}
				h := sha256.New()
				n, err := io.Copy(h, c)
				var r res
				copy(r.sum[:], h.Sum(nil))
				r.n, r.err = n, err
				done <- r
			}()
			nc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := nc.(*net.TCPConn).File()
			nc.Close()
			defer raw.Close()
			sock := int(raw.Fd())
			p, err := NewTLS(sock, ca.ServerConfig(), Options{Chunk: chunk})
			if err != nil {
				t.Fatal(err)
			}
			req := make([]byte, 7)
			if n, err := p.(TLSReader).Read(req); err != nil || string(req[:n]) != "request" {
				t.Fatalf("read request through TLS: %q, %v", req[:n], err)
			}
			n, err := p.Send(sock, parts)
			if err != nil {
				t.Fatal(err)
			}
			wantSum, wantN := expected(t, files, [][]Part{parts})
			if n != wantN {
				t.Errorf("Send returned %d, want %d plaintext bytes", n, wantN)
			}
			l := p.Ledger()
			p.Close()
			unix.Shutdown(sock, unix.SHUT_WR)
			r := <-done
			if r.err != nil || r.n != wantN || r.sum != wantSum {
				t.Fatalf("client decrypted %d bytes sha256 %x (%v), want %d bytes %x", r.n, r.sum[:8], r.err, wantN, wantSum[:8])
			}
			spans := uint64(3<<20 + 24 + 1<<20 + 7)
			if l.SpanBytes != spans || l.BytesSent <= uint64(wantN) {
				t.Errorf("ledger span bytes %d (want %d), socket bytes %d (want more than the %d plaintext)", l.SpanBytes, spans, l.BytesSent, wantN)
			}
			if min := spans / uint64(chunk); l.Calls["pread64"] < min || l.Calls["pread64"] > min+2 {
				t.Errorf("ledger pread64 %d, want about %d", l.Calls["pread64"], min)
			}
			// One write per TLS record: at least one per 16 KiB of plaintext.
			if l.Calls["write"] < uint64(wantN)/(16<<10) {
				t.Errorf("ledger write %d for %d bytes: fewer than one per 16 KiB record", l.Calls["write"], wantN)
			}
			t.Logf("chunk %d: ledger %v, %d socket bytes for %d plaintext (%.2f%% TLS overhead)", chunk, l.Calls, l.BytesSent, wantN, 100*(float64(l.BytesSent)/float64(wantN)-1))
		})
	}
}

func TestNewTLSNeedsCertificate(t *testing.T) {
	if _, err := NewTLS(0, &tls.Config{}, Options{}); err == nil {
		t.Fatal("NewTLS without a certificate: no error")
	}
}
