package kafka

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/copyscope/copyscope/internal/testca"
)

// TestTLSListenerKcatFranz: a TLS listener with a certificate from a test
// CA the test makes; kcat (librdkafka, -X security.protocol=ssl) produces
// and consumes a topic, franz-go (kgo over crypto/tls) consumes it too,
// and both read back exactly the bytes produced.
func TestTLSListenerKcatFranz(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, t.TempDir(), func(c *Config) {
		c.Listeners = []Listener{{Addr: "127.0.0.1:0", TLS: ca.ServerConfig()}}
	})
	if p := b.srv.Addrs()[0].Path; p != "tls" {
		t.Fatalf("TLS listener serves path %q, want tls", p)
	}
	var in bytes.Buffer
	const n = 20000
	for i := range n {
		fmt.Fprintf(&in, "%06d:%s\n", i, bytes.Repeat([]byte{'a' + byte(i%26)}, 100+i%300))
	}
	want := in.Bytes()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ssl := []string{"-b", b.addr, "-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + caFile}
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, kcat, append(ssl, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	run(want, "-t", "sec", "-P")
	got := run(nil, "-t", "sec", "-C", "-o", "beginning", "-e", "-q")
	if !bytes.Equal(got, want) {
		t.Fatalf("kcat over TLS consumed %d bytes, sha256 %x; produced %d, %x", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.DialTLSConfig(ca.ClientConfig()),
		kgo.ConsumeTopics("sec"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var fr bytes.Buffer
	for recs := 0; recs < n; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("franz-go fetch over TLS after %d records: %v", recs, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fr.Write(r.Value)
			fr.WriteByte('\n')
			recs++
		})
	}
	if !bytes.Equal(fr.Bytes(), want) {
		t.Fatalf("franz-go over TLS read %d bytes, want the %d produced", fr.Len(), len(want))
	}
	t.Logf("kcat produced and consumed, franz-go consumed %d records (%d bytes) over TLS, byte-identical", n, len(want))
}
