package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestBrokerConfigs(t *testing.T) {
	base := func() brokerFlags {
		return brokerFlags{listen: []string{"127.0.0.1:9092"}, fetchPath: "sendfile", producePath: "write", chunk: "64KiB",
			fsync: "interval", partitions: 1, segmentBytes: "1GiB", retentionBytes: "-1", retentionMs: 1000, maxRequestBytes: "100MiB",
			maxConns: 1000, maxConnsPerIP: 200, maxPartitions: 4096, maxOpenSegmentFiles: 2048, idleTimeout: 10 * time.Minute, requestTimeout: 30 * time.Second, maxBufferedRequestBytes: "256MiB"}
	}
	f := base()
	f.listen = []string{"read=127.0.0.1:1", "127.0.0.1:2"}
	f.chunk, f.fsync, f.producePath, f.segmentBytes, f.retentionBytes, f.retentionMs = "4KiB", "always", "mmap", "64MiB", "1GB", -1
	f.maxConnsPerIP, f.idleTimeout, f.maxBufferedRequestBytes = -1, -time.Second, "1GiB"
	lc, kc, err := brokerConfigs(f)
	if err != nil {
		t.Fatal(err)
	}
	if kc.MaxConnections != 1000 || kc.MaxConnectionsPerIP != -1 || kc.IdleTimeout >= 0 || kc.RequestTimeout != 30*time.Second || kc.MaxBufferedRequestBytes != 1<<30 {
		t.Fatalf("limits %+v", kc)
	}
	if kc.Listeners[0].Path != "read" || kc.Listeners[1].Path != "sendfile" || kc.Chunk != 4096 || kc.MaxRequestBytes != 100<<20 {
		t.Fatalf("server config %+v", kc)
	}
	if lc.Fsync != log.FsyncAlways || lc.Produce != log.ProduceMmap || lc.SegmentBytes != 64<<20 || lc.RetentionBytes != 1e9 || lc.RetentionAge != 0 {
		t.Fatalf("log config %+v", lc)
	}
	bad := []func(*brokerFlags){
		func(f *brokerFlags) { f.listen = []string{"warp=127.0.0.1:1"} },
		func(f *brokerFlags) { f.listen = []string{"9092"} },
		func(f *brokerFlags) { f.fetchPath = "carrier-pigeon" },
		func(f *brokerFlags) { f.chunk = "0" },
		func(f *brokerFlags) { f.chunk = "1GiB" },
		func(f *brokerFlags) { f.fsync = "sometimes" },
		func(f *brokerFlags) { f.producePath = "sendfile" },
		func(f *brokerFlags) { f.partitions = 0 },
		func(f *brokerFlags) { f.maxRequestBytes = "4GiB" },
		func(f *brokerFlags) { f.retentionMs = 0 },
		func(f *brokerFlags) { f.segmentBytes = "lots" },
		func(f *brokerFlags) { f.maxConns = 0 },
		func(f *brokerFlags) { f.maxPartitions = 0 },
		func(f *brokerFlags) { f.maxOpenSegmentFiles = 1 },
		func(f *brokerFlags) { f.maxConnsPerIP = -2 },
		func(f *brokerFlags) { f.requestTimeout = 0 },
		func(f *brokerFlags) { f.maxBufferedRequestBytes = "1MiB" }, // below one 100 MiB request
	}
	for i, mod := range bad {
		f := base()
		mod(&f)
		if _, _, err := brokerConfigs(f); err == nil {
			t.Errorf("bad flags %d accepted: %+v", i, f)
		}
	}
}

// TestHelperBrokerProcess is not a test: TestBrokerCommand runs the test
// binary with COPYSCOPE_BROKER_CHILD=1 to get a real `copyscope broker`
// process it can signal.
func TestHelperBrokerProcess(t *testing.T) {
	if os.Getenv("COPYSCOPE_BROKER_CHILD") != "1" {
		t.Skip("helper process for TestBrokerCommand, not a test by itself")
	}
	args := strings.Split(os.Getenv("COPYSCOPE_BROKER_ARGS"), "\x1f")
	root := newRootCmd()
	root.SetArgs(append([]string{"broker"}, args...))
	if err := root.Execute(); err != nil {
		os.Stderr.WriteString("copyscope: " + err.Error() + "\n")
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

type brokerChild struct {
	cmd     *exec.Cmd
	addr    string
	done    chan struct{} // closed when the process has exited
	drained chan struct{} // closed when all of its stderr has been read
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (c *brokerChild) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// startBrokerChild runs `copyscope broker args...`; if wantAddr, it waits
// for the "listening on" line and records the bound address.
func startBrokerChild(t *testing.T, wantAddr bool, args ...string) *brokerChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBrokerProcess$")
	cmd.Env = append(os.Environ(), "COPYSCOPE_BROKER_CHILD=1", "COPYSCOPE_BROKER_ARGS="+strings.Join(args, "\x1f"))
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &brokerChild{cmd: cmd, done: make(chan struct{}), drained: make(chan struct{})}
	addrCh := make(chan string, 1)
	re := regexp.MustCompile(`listening on (\S+)`)
	go func() {
		defer close(c.drained)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.mu.Lock()
			c.buf.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			cmd.Process.Kill()
			<-c.done
		}
	})
	if !wantAddr {
		return c
	}
	select {
	case c.addr = <-addrCh:
	case <-c.drained:
		t.Fatalf("broker exited instead of listening:\n%s", c.stderr())
	case <-time.After(20 * time.Second):
		t.Fatalf("broker did not start in 20 s:\n%s", c.stderr())
	}
	return c
}

// wait waits for the process to exit and returns its exit code.
func (c *brokerChild) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
		<-c.drained
	case <-time.After(20 * time.Second):
		t.Fatalf("broker did not exit within 20 s:\n%s", c.stderr())
	}
	return c.cmd.ProcessState.ExitCode()
}

// TestBrokerCommand runs the real command: produce with acks=-1, SIGTERM
// (clean shutdown, exit 0), restart and read the record back; a second
// broker on a busy port or a locked directory exits 1 with a one-line error.
func TestBrokerCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the broker subprocess test")
	}
	dir := t.TempDir()
	b := startBrokerChild(t, true, "--data", dir, "--listen", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.DefaultProduceTopic("cmd"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("survives a restart")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v\n%s", err, b.stderr())
	}
	cl.Close()

	busy := startBrokerChild(t, false, "--data", t.TempDir(), "--listen", b.addr)
	if code := busy.wait(t); code != 1 || !strings.Contains(busy.stderr(), "already in use") || strings.Count(strings.TrimSpace(busy.stderr()), "\n") != 0 {
		t.Fatalf("busy port: exit %d, stderr %q; want exit 1 and one line", code, busy.stderr())
	}
	locked := startBrokerChild(t, false, "--data", dir, "--listen", "127.0.0.1:0")
	if code := locked.wait(t); code != 1 || !strings.Contains(locked.stderr(), "locked") || strings.Count(strings.TrimSpace(locked.stderr()), "\n") != 0 {
		t.Fatalf("locked dir: exit %d, stderr %q; want exit 1 and one line", code, locked.stderr())
	}

	b.cmd.Process.Signal(syscall.SIGTERM)
	if code := b.wait(t); code != 0 || !strings.Contains(b.stderr(), "stopped cleanly") {
		t.Fatalf("SIGTERM: exit %d\n%s", code, b.stderr())
	}

	b2 := startBrokerChild(t, true, "--data", dir, "--listen", "127.0.0.1:0")
	cl2, err := kgo.NewClient(kgo.SeedBrokers(b2.addr), kgo.ConsumeTopics("cmd"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	fs := cl2.PollFetches(ctx)
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "survives a restart" {
		t.Fatalf("after restart: %d records, errors %v", len(recs), fs.Errors())
	}
	b2.cmd.Process.Signal(syscall.SIGINT)
	if code := b2.wait(t); code != 0 {
		t.Fatalf("SIGINT: exit %d\n%s", code, b2.stderr())
	}
}
