package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBrokerRecoveryMetrics: a broker killed with SIGKILL whose active
// segment then gets 100 bytes of garbage appended starts again, logs the
// cut and exposes it on --prometheus: one truncation of 100 bytes.
func TestBrokerRecoveryMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the broker subprocess test")
	}
	dir := t.TempDir()
	b := startBrokerChild(t, true, "--data", dir, "--listen", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.DefaultProduceTopic("crash"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatalf("produce: %v\n%s", err, b.stderr())
		}
	}
	cl.Close()
	b.cmd.Process.Kill()
	b.wait(t)
	seg := filepath.Join(dir, "crash-0", "00000000000000000000.log")
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0xee}, 100)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b2 := startBrokerChild(t, true, "--data", dir, "--listen", "127.0.0.1:0", "--prometheus", "127.0.0.1:0")
	m := regexp.MustCompile(`health metrics at (http://\S+/metrics)`).FindStringSubmatch(b2.stderr())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", b2.stderr())
	}
	if !strings.Contains(b2.stderr(), "recovery truncated crash-0: 100 bytes of 00000000000000000000.log") {
		t.Errorf("the cut is not logged:\n%s", b2.stderr())
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"copyscope_broker_recovery_truncations_total 1\n", "copyscope_broker_recovery_dropped_bytes_total 100\n", "copyscope_broker_data_dir_lost 0\n"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", strings.TrimSpace(want), body)
		}
	}
}
