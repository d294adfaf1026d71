package transfer

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/internal/procfs"
)

// The kernel TLS ABI (include/uapi/linux/tls.h); x/sys/unix lacks it.
const (
	solTLS             = unix.SOL_TLS
	tlsTX              = 1
	tls13Version       = 0x0304
	tlsCipherAESGCM128 = 51
)

// ktlsCryptoInfo is struct tls12_crypto_info_aes_gcm_128 (40 bytes): for
// TLS 1.3 the 12-byte IV is split into salt (first 4) and iv (last 8).
type ktlsCryptoInfo struct {
	version    uint16
	cipherType uint16
	iv         [8]byte
	key        [16]byte
	salt       [4]byte
	recSeq     [8]byte
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1) with SHA-256.
func hkdfExpandLabel(secret []byte, label string, length int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = append(info, byte(length>>8), byte(length), byte(len(full)))
	info = append(info, full...)
	info = append(info, 0) // empty context
	return hkdf.Expand(sha256.New, secret, string(info), length)
}

// txCryptoInfo derives the kernel's TX parameters from a TLS 1.3
// TLS_AES_128_GCM_SHA256 server application traffic secret, for a
// connection that has sent seq records with it.
func txCryptoInfo(secret []byte, seq uint64) (ktlsCryptoInfo, error) {
	key, err := hkdfExpandLabel(secret, "key", 16)
	if err != nil {
		return ktlsCryptoInfo{}, err
	}
	iv, err := hkdfExpandLabel(secret, "iv", 12)
	if err != nil {
		return ktlsCryptoInfo{}, err
	}
	ci := ktlsCryptoInfo{version: tls13Version, cipherType: tlsCipherAESGCM128}
	copy(ci.key[:], key)
	copy(ci.salt[:], iv[:4])
	copy(ci.iv[:], iv[4:])
	for i := 0; i < 8; i++ {
		ci.recSeq[7-i] = byte(seq >> (8 * i))
	}
	return ci, nil
}

// keyLog keeps the server application traffic secret crypto/tls reports
// through Config.KeyLogWriter (the only way Go exposes it).
type keyLog struct {
	mu     sync.Mutex
	server []byte
}

func (k *keyLog) Write(line []byte) (int, error) {
	f := strings.Fields(string(line))
	if len(f) == 3 && f[0] == "SERVER_TRAFFIC_SECRET_0" {
		s, err := hex.DecodeString(f[2])
		if err != nil {
			return 0, fmt.Errorf("key log: %w", err)
		}
		k.mu.Lock()
		k.server = s
		k.mu.Unlock()
	}
	return len(line), nil
}

func (k *keyLog) secret() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return bytes.Clone(k.server)
}

// ErrNoTLSULP: the kernel has no tls ULP, so no kTLS path can run here.
var ErrNoTLSULP = errors.New("kernel TLS unavailable")

// ktlsPath is a kTLS path (ktls-sendfile, ktls-splice): the handshake in Go
// on the connection's thread, then the server's TX keys handed to the
// kernel's TLS ULP, then the inner by-reference path (sendfile or splice)
// with the kernel encrypting: no copy into user memory. Requests are still
// decrypted in Go (TX offload only); TLS 1.3 with TLS_AES_128_GCM_SHA256,
// session tickets off, so nothing was sent with the keys before the kernel
// takes them over (record sequence 0).
type ktlsPath struct {
	name  string
	tls   *tlsPath
	keys  *keyLog
	inner Path
	on    bool
}

// NewKTLS returns the kTLS path name ("ktls-sendfile" or "ktls-splice")
// serving the TLS server side of sock with cfg (cloned: TLS 1.3 only, no
// session tickets, a key log for the handshake's secrets).
func NewKTLS(name string, sock int, cfg *tls.Config, opts Options) (Path, error) {
	var inner Path
	switch name {
	case "ktls-sendfile":
		inner = newSendfilePath(opts)
	case "ktls-splice":
		inner = newSplicePath(opts)
	default:
		return nil, fmt.Errorf("unknown kTLS path %q (ktls-sendfile, ktls-splice)", name)
	}
	keys := &keyLog{}
	c := cfg.Clone()
	c.MinVersion, c.MaxVersion, c.SessionTicketsDisabled, c.KeyLogWriter = tls.VersionTLS13, tls.VersionTLS13, true, keys
	tp, err := NewTLS(sock, c, opts)
	if err != nil {
		return nil, err
	}
	return &ktlsPath{name: name, tls: tp.(*tlsPath), keys: keys, inner: inner}, nil
}

func (p *ktlsPath) Name() string { return p.name }

// Ledger is the inner path's, plus the handshake's reads and writes.
func (p *ktlsPath) Ledger() Ledger {
	l, h := p.inner.Ledger(), p.tls.Ledger()
	for k, v := range h.Calls {
		l.Calls[k] += v
	}
	l.BytesSent += h.BytesSent
	return l
}

func (p *ktlsPath) Read(b []byte) (int, error) { return p.tls.Read(b) }

func (p *ktlsPath) Close() error {
	p.tls.Close()
	return p.inner.Close()
}

func (p *ktlsPath) Send(sock int, parts []Part) (int64, error) {
	if !p.on {
		if err := p.offload(sock); err != nil {
			return 0, err
		}
		p.on = true
	}
	return p.inner.Send(sock, parts)
}

// offload finishes the handshake if needed and gives the TX keys to the
// kernel: setsockopt TCP_ULP "tls", then SOL_TLS TLS_TX.
func (p *ktlsPath) offload(sock int) error {
	if err := p.tls.conn.Handshake(); err != nil {
		return fmt.Errorf("%s: TLS handshake: %w", p.name, err)
	}
	st := p.tls.conn.ConnectionState()
	if st.Version != tls.VersionTLS13 || st.CipherSuite != tls.TLS_AES_128_GCM_SHA256 {
		return fmt.Errorf("%s: negotiated %s with %s; kTLS here takes TLS 1.3 TLS_AES_128_GCM_SHA256 only", p.name, tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	ci, err := txCryptoInfo(p.keys.secret(), 0)
	if err != nil {
		return fmt.Errorf("%s: derive TX keys: %w", p.name, err)
	}
	if err := unix.SetsockoptString(sock, unix.IPPROTO_TCP, unix.TCP_ULP, "tls"); err != nil {
		ulps, _ := procfs.Sysctl("net/ipv4/tcp_available_ulp")
		return fmt.Errorf("%s: %w: setsockopt TCP_ULP tls: %v (tcp_available_ulp: %q; modprobe tls, a kernel with CONFIG_TLS)", p.name, ErrNoTLSULP, err, ulps)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&ci)), unsafe.Sizeof(ci))
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(sock), solTLS, tlsTX, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if errno != 0 {
		return fmt.Errorf("%s: setsockopt SOL_TLS TLS_TX: %w", p.name, errno)
	}
	return nil
}
