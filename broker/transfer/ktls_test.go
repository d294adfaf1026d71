package transfer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/testca"
)

func TestKTLSCryptoInfoLayout(t *testing.T) {
	var ci ktlsCryptoInfo
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof tls12_crypto_info_aes_gcm_128", unsafe.Sizeof(ci), 40},
		{"iv", unsafe.Offsetof(ci.iv), 4},
		{"key", unsafe.Offsetof(ci.key), 12},
		{"salt", unsafe.Offsetof(ci.salt), 28},
		{"rec_seq", unsafe.Offsetof(ci.recSeq), 32},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, uapi says %d", c.what, c.got, c.want)
		}
	}
}

// sealLikeKernel builds TLS 1.3 application record seq from ci as the
// kernel's TLS ULP does with the parameters it is given: nonce = salt||iv
// XOR seq, AES-128-GCM over plaintext||content type, the header as AAD.
func sealLikeKernel(t *testing.T, ci ktlsCryptoInfo, seq uint64, plain []byte) []byte {
	t.Helper()
	blk, err := aes.NewCipher(ci.key[:])
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	nonce := append(append([]byte{}, ci.salt[:]...), ci.iv[:]...)
	var start uint64
	for _, b := range ci.recSeq {
		start = start<<8 | uint64(b)
	}
	seq += start // the kernel counts from rec_seq
	for i := 0; i < 8; i++ {
		nonce[11-i] ^= byte(seq >> (8 * i))
	}
	inner := append(append([]byte{}, plain...), 0x17)
	n := len(inner) + aead.Overhead()
	hdr := []byte{0x17, 0x03, 0x03, byte(n >> 8), byte(n)}
	return append(hdr, aead.Seal(nil, nonce, inner, hdr)...)
}

// TestKTLSKeysAsTheKernelUsesThem: the TX parameters a kTLS path would
// hand the kernel, used the way the kernel uses them, produce records a
// crypto/tls client decrypts: key derivation, salt/IV split and record
// sequence are right without a kernel that has the ULP.
func TestKTLSKeysAsTheKernelUsesThem(t *testing.T) {
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	msgs := []string{"first record, as the kernel would seal it", strings.Repeat("second ", 2000)}
	got := make(chan string, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), ca.ClientConfig())
		if err != nil {
			got <- "dial: " + err.Error()
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err != nil && len(b) == 0 {
			got <- "read: " + err.Error()
			return
		}
		got <- string(b)
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := nc.(*net.TCPConn).File()
	nc.Close()
	defer f.Close()
	sock := int(f.Fd())
	pp, err := NewKTLS("ktls-sendfile", sock, ca.ServerConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := pp.(*ktlsPath)
	if err := p.tls.conn.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if st := p.tls.conn.ConnectionState(); st.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
		t.Skipf("negotiated %s, not the AES-128-GCM this check builds", tls.CipherSuiteName(st.CipherSuite))
	}
	ci, err := txCryptoInfo(p.keys.secret(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for seq, m := range msgs {
		if _, err := unix.Write(sock, sealLikeKernel(t, ci, uint64(seq), []byte(m))); err != nil {
			t.Fatal(err)
		}
	}
	unix.Shutdown(sock, unix.SHUT_WR)
	if s := <-got; s != strings.Join(msgs, "") {
		t.Fatalf("client decrypted %.60q..., want the %d records' plaintext", s, len(msgs))
	}
}

// TestKTLSNeedsULP: where the kernel lacks the tls ULP (this machine:
// tcp_available_ulp lists only mptcp), the first Send fails with
// ErrNoTLSULP naming the list, and the kTLS paths are skipped; with the
// ULP the path sends and a crypto/tls client reads the plaintext.
func TestKTLSNeedsULP(t *testing.T) {
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := t.TempDir()
	seg := writeTempFile(t, dir, "00.log", 1<<20, 3)
	for _, name := range []string{"ktls-sendfile", "ktls-splice"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int, 1)
		go func() {
			c, err := tls.Dial("tcp", ln.Addr().String(), ca.ClientConfig())
			if err != nil {
				got <- -1
				return
			}
			b, _ := io.ReadAll(c)
			c.Close()
			got <- len(b)
		}()
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		f, _ := nc.(*net.TCPConn).File()
		nc.Close()
		sock := int(f.Fd())
		p, err := NewKTLS(name, sock, ca.ServerConfig(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Send(sock, []Part{{Span: Span{Fd: int(seg.Fd()), Len: 1 << 20}}})
		p.Close()
		unix.Shutdown(sock, unix.SHUT_WR)
		f.Close()
		n := <-got
		ulps, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_ulp")
		if !strings.Contains(string(ulps), "tls") {
			if !errors.Is(err, ErrNoTLSULP) || !strings.Contains(err.Error(), "tcp_available_ulp") {
				t.Fatalf("%s without the tls ULP: error %v, want ErrNoTLSULP naming tcp_available_ulp", name, err)
			}
			t.Logf("%s: %v", name, err)
			continue
		}
		if err != nil || n != 1<<20 {
			t.Errorf("%s with the tls ULP: send error %v, client decrypted %d bytes, want %d", name, err, n, 1<<20)
		}
	}
	if ulps, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_ulp"); !strings.Contains(string(ulps), "tls") {
		t.Skipf("kTLS paths skipped: the kernel offers no tls ULP (tcp_available_ulp: %s)", strings.TrimSpace(string(ulps)))
	}
}
