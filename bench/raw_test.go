package bench

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/testca"
)

func tempSpans(t *testing.T, sizes ...int) ([]transfer.Span, int64) {
	t.Helper()
	var spans []transfer.Span
	var total int64
	for i, n := range sizes {
		f, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("%02d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		b := make([]byte, n)
		fillValue(b, uint64(i))
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, transfer.Span{Fd: int(f.Fd()), Off: 0, Len: int64(n)})
		total += int64(n)
	}
	return spans, total
}

func TestRunRaw(t *testing.T) {
	spans, total := tempSpans(t, 3<<20+17, 5<<20)
	ca, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append(transfer.Names(), "tls") {
		t.Run(path, func(t *testing.T) {
			var srv, cli *tls.Config
			if path == "tls" { // the receiver decrypts: it counts plaintext
				srv, cli = ca.ServerConfig(), ca.ClientConfig()
			}
			res, err := runRaw(path, transfer.Options{Chunk: 64 << 10}, spans, ProcCounters(), 0, 1, 0, 0, "", srv, cli)
			if err != nil {
				t.Fatal(err)
			}
			if res.sink.bytes != total || res.ledger.SpanBytes != uint64(total) {
				t.Fatalf("raw %s: receiver %d bytes, ledger %d, want %d", path, res.sink.bytes, res.ledger.SpanBytes, total)
			}
			if res.seconds <= 0 || res.sender.delta.CPUNs == 0 || res.sink.reads == 0 {
				t.Fatalf("raw %s: seconds %v, sender cpu %d ns, receiver reads %d: nothing measured", path, res.seconds, res.sender.delta.CPUNs, res.sink.reads)
			}
			t.Logf("%s: %.2f GB/s, sender %+v, ledger %v", path, float64(total)/res.seconds/1e9, res.sender.delta, res.ledger.Calls)
		})
	}
}

func TestRunRawBadPath(t *testing.T) {
	spans, _ := tempSpans(t, 4096)
	if _, err := runRaw("nope", transfer.Options{}, spans, ProcCounters(), -1, -1, 0, 0, "", nil, nil); err == nil {
		t.Fatal("runRaw with an unknown path: no error")
	}
}
