package bench

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/kproduce"
	"github.com/copyscope/copyscope/metrics"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// The dead-letter comparison (Config.DeadLetters): over every path's
// listener a lean producer on a locked thread sends N records to the
// dead-letter topic bench.dlq in requests of deadLetterBatch, either as
// references the broker resolves from its log ("reference": a value-less
// record with header copyscope-dlq-ref, see broker/kafka's dlq.go) or as
// the whole record a consumer would re-produce ("reproduce", the
// client-side dead letter). The broker's data thread and the producer's
// thread are measured, and the records say what each dead letter costs.

const (
	deadLetterTopic = "bench.dlq"
	deadLetterBatch = 100
	refHeader       = "copyscope-dlq-ref" // broker/kafka.RefHeader
)

// DeadLetterResult is one path and way of sending N dead letters.
type DeadLetterResult struct {
	Path    string  `json:"path"`
	Way     string  `json:"dead_letter"` // "reference" or "reproduce"
	Records int     `json:"records"`
	Seconds float64 `json:"seconds"`
	// BytesSent is what the producer put on the socket (requests).
	BytesSent uint64 `json:"bytes_sent"`
	// The broker's data thread, per dead letter (absent when not measured).
	CPUNsPerRecord      *float64 `json:"cpu_ns_per_record,omitempty"`
	SyscallsPerRecord   *float64 `json:"syscalls_per_record,omitempty"`
	CopiedBytesPerRec   *float64 `json:"copied_bytes_per_record,omitempty"` // to and from user space
	ProducerCPUNsPerRec *float64 `json:"producer_cpu_ns_per_record,omitempty"`
	BytesSentPerRecord  float64  `json:"bytes_sent_per_record"`
	metrics.Record
}

// DeadLetters runs the comparison on a fresh log of cfg.Size bytes.
func DeadLetters(ctx context.Context, cfg Config, n int) ([]DeadLetterResult, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if n <= 0 || n > 1_000_000 {
		return nil, fmt.Errorf("dead letters %d out of range 1..1000000", n)
	}
	dir, cleanup, err := benchDir(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	lc := log.DefaultConfig()
	lc.Fsync = log.FsyncNever
	store, err := log.Open(dir, lc)
	if err != nil {
		return nil, fmt.Errorf("open bench log in %s: %w", dir, err)
	}
	defer store.Close()
	_, end, _, err := produce(store, cfg, crc32.MakeTable(crc32.Castagnoli))
	if err != nil {
		return nil, err
	}
	if err := store.CreateTopic(deadLetterTopic, 1); err != nil {
		return nil, fmt.Errorf("create %s: %w", deadLetterTopic, err)
	}
	srv, err := startBroker(store, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	var out []DeadLetterResult
	for _, path := range cfg.Paths {
		for _, way := range []string{"reference", "reproduce"} {
			r, err := onThread(func() (DeadLetterResult, error) { return sendDeadLetters(ctx, srv, cfg, path, way, n, end) })
			if err != nil {
				return out, fmt.Errorf("%s %s dead letters: %w", path, way, err)
			}
			fmt.Fprintf(cfg.Progress, "dead letters %-8s %-9s %d in %.2fs\n", path, way, n, r.Seconds)
			out = append(out, r)
		}
	}
	return out, nil
}

// onThread runs f on a fresh locked OS thread that dies with it.
func onThread(f func() (DeadLetterResult, error)) (DeadLetterResult, error) {
	type res struct {
		r   DeadLetterResult
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		r, err := f()
		ch <- res{r, err}
	}()
	o := <-ch
	return o.r, o.err
}

// sendDeadLetters sends n dead letters one way over path's listener and
// measures both threads.
func sendDeadLetters(ctx context.Context, srv fetchServer, cfg Config, path, way string, n int, end int64) (DeadLetterResult, error) {
	addr, err := srv.addr(path)
	if err != nil {
		return DeadLetterResult{}, err
	}
	events, cancel := srv.registry().Subscribe()
	defer cancel()
	fd, err := dialBlocking(addr, 0)
	if err != nil {
		return DeadLetterResult{}, err
	}
	defer unix.Close(fd)
	dtid, err := dataThread(ctx, events, localAddr(fd), addr)
	if err != nil {
		return DeadLetterResult{}, err
	}
	tc, ptid := cfg.Counters, unix.Gettid()
	if err := tc.Watch(dtid, ptid); err != nil {
		return DeadLetterResult{}, err
	}
	defer tc.Unwatch(dtid, ptid)
	dBefore, err := tc.Read(dtid)
	if err != nil {
		return DeadLetterResult{}, err
	}
	pBefore, err := tc.Read(ptid)
	if err != nil {
		return DeadLetterResult{}, err
	}
	start := time.Now()
	p := kproduce.New(fd)
	value := make([]byte, cfg.RecordSize)
	for i := 0; i < n; i += deadLetterBatch {
		if err := p.Send(deadLetterTopic, deadLetterRecords(way, i, min(deadLetterBatch, n-i), end, value)); err != nil {
			return DeadLetterResult{}, err
		}
	}
	secs := time.Since(start).Seconds()
	sent := p.BytesSent
	dAfter, err := tc.Read(dtid)
	if err != nil {
		return DeadLetterResult{}, err
	}
	pAfter, err := tc.Read(ptid)
	if err != nil {
		return DeadLetterResult{}, err
	}
	return deadLetterRecord(path, way, n, secs, sent, start, tc.Mode(), dAfter.Sub(dBefore), pAfter.Sub(pBefore)), nil
}

// deadLetterRecords are dead letters i..i+k-1 one way: references to
// offsets spread over the log, or whole records of the log's value size.
func deadLetterRecords(way string, i, k int, end int64, value []byte) []kmsg.Record {
	recs := make([]kmsg.Record, k)
	for j := range recs {
		off := int64(i+j) * 7919 % end
		if way == "reference" {
			recs[j].Headers = []kmsg.Header{{Key: refHeader, Value: fmt.Appendf(nil, "%s/0/%d", topic, off)}}
			continue
		}
		fillValue(value, uint64(off))
		recs[j].Value = value
	}
	return recs
}

func deadLetterRecord(path, way string, n int, secs float64, sent uint64, start time.Time, mode metrics.Mode, d, p metrics.Counters) DeadLetterResult {
	r := DeadLetterResult{Path: path, Way: way, Records: n, Seconds: secs, BytesSent: sent, BytesSentPerRecord: float64(sent) / float64(n)}
	r.Record = metrics.FromDelta(start.Add(time.Duration(secs*1e9)), time.Duration(secs*1e9), mode, metrics.Subject{Kind: metrics.KindPath, Name: path}, d)
	per := func(v uint64) *float64 { x := float64(v) / float64(n); return &x }
	if d.Measured.Has(metrics.FCPU) {
		r.CPUNsPerRecord = per(d.CPUNs)
	}
	if d.Measured.Has(metrics.FSyscalls) {
		r.SyscallsPerRecord = per(d.Syscalls)
	}
	if r.CopiedToUserBytes != nil && r.CopiedFromUserBytes != nil {
		r.CopiedBytesPerRec = per(*r.CopiedToUserBytes + *r.CopiedFromUserBytes)
	}
	if p.Measured.Has(metrics.FCPU) {
		r.ProducerCPUNsPerRec = per(p.CPUNs)
	}
	return r
}

// benchDir is cfg.DataDir, or a temporary directory removed by cleanup.
func benchDir(cfg Config) (dir string, cleanup func(), err error) {
	if cfg.DataDir != "" {
		return cfg.DataDir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "copyscope-bench-")
	if err != nil {
		return "", nil, fmt.Errorf("create bench data dir: %w (use --data DIR)", err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// WriteDeadLetters prints one row per path and way: per dead letter, the
// broker data thread's CPU, syscalls and CPU-copied bytes, the producer's
// CPU and the bytes it sent.
func WriteDeadLetters(w io.Writer, rs []DeadLetterResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tdead letter\trecords\tbroker ns/rec\tbroker syscalls/rec\tbroker copied B/rec\tproducer ns/rec\tsent B/rec\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.0f\t\n", r.Path, r.Way, r.Records, fmtPtr(r.CPUNsPerRecord, "%.0f"),
			fmtPtr(r.SyscallsPerRecord, "%.3f"), fmtPtr(r.CopiedBytesPerRec, "%.0f"), fmtPtr(r.ProducerCPUNsPerRec, "%.0f"), r.BytesSentPerRecord)
	}
	return tw.Flush()
}
