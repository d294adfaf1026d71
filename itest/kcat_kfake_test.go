package itest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kcatGroupRead runs `kcat -G` as a fresh group until every partition is
// at its end and returns how long it took; it checks every record of
// every partition arrived once, in order, with its value.
func kcatGroupRead(t *testing.T, kcat, addr, group, topic string, partitions int32, n int) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", addr, "-G", group, topic, "-e", "-q", "-f", "%p %o %s\n",
		"-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=50")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("kcat -G %s at %s: %v\n%s", group, addr, err, stderr.String())
	}
	next := make([]int64, partitions)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var want []byte
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) != 3 {
			t.Fatalf("kcat line %q: want partition, offset, value", sc.Text())
		}
		p, err1 := strconv.Atoi(string(f[0]))
		off, err2 := strconv.ParseInt(string(f[1]), 10, 64)
		if err1 != nil || err2 != nil || p < 0 || p >= int(partitions) {
			t.Fatalf("kcat line %q: bad partition or offset", sc.Text())
		}
		want = fmt.Appendf(want[:0], "p%d-%d-", p, next[p])
		if off != next[p] || !bytes.HasPrefix(f[2], want) {
			t.Fatalf("%s: partition %d: got %.20q at offset %d, want %q... at %d", addr, p, f[2], off, want, next[p])
		}
		next[p]++
	}
	for p, got := range next {
		if got != int64(n) {
			t.Fatalf("%s: kcat -G read %d records of partition %d, want %d", addr, got, p, n)
		}
	}
	return took
}

// TestKcatGroupVsKfake reads 1,000,000 records of 100 bytes (4
// partitions; 100,000 with -short) with `kcat -G` from the copyscope
// broker and from franz-go's kfake, alternating, 5 runs each, and
// compares the medians: copyscope must be no slower, within the 25 % by
// which medians of one server varied between runs on this shared 2-core
// machine (kcat spends ~0.4 s of CPU in a ~4 s read: the rest is waiting
// for a CPU, and for the same fetch.wait.max.ms and group timers on both).
func TestKcatGroupVsKfake(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); skipping kcat -G against kfake")
	}
	const topic, partitions, size = "perf", 4, 100
	n, runs := 250_000, 5
	if testing.Short() {
		n, runs = 25_000, 1
	}
	b := startBroker(t, t.TempDir())
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	fakeAddr := fake.ListenAddrs()[0]
	for _, addr := range []string{b.addr, fakeAddr} {
		start := time.Now()
		produceSeq(t, addr, topic, partitions, n, size)
		t.Logf("produced %d records to %s in %v", partitions*n, addr, time.Since(start).Round(time.Millisecond))
	}
	var cs, kf []time.Duration
	for run := range runs { // alternating, and which goes first too
		readCS := func() {
			cs = append(cs, kcatGroupRead(t, kcat, b.addr, fmt.Sprintf("cs%d", run), topic, partitions, n))
		}
		readKF := func() {
			kf = append(kf, kcatGroupRead(t, kcat, fakeAddr, fmt.Sprintf("kf%d", run), topic, partitions, n))
		}
		if run%2 == 0 {
			readCS()
			readKF()
		} else {
			readKF()
			readCS()
		}
	}
	slices.Sort(cs)
	slices.Sort(kf)
	mc, mk := cs[len(cs)/2], kf[len(kf)/2]
	t.Logf("kcat -G read %d records of %d bytes: copyscope %v (runs %v), kfake %v (runs %v); copyscope/kfake = %.2f (machine shared with other work: ratios, not absolutes)",
		partitions*n, size, mc.Round(time.Millisecond), cs, mk.Round(time.Millisecond), kf, float64(mc)/float64(mk))
	if !testing.Short() && float64(mc) > 1.25*float64(mk) {
		t.Errorf("kcat -G is slower from copyscope (median %v) than from kfake (median %v)", mc, mk)
	}
}
