package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"runtime"
	"time"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/kfetch"
	"github.com/copyscope/copyscope/metrics"
	"golang.org/x/sys/unix"
)

// fetchServer is the broker a bench consumes from: one listener per path,
// data threads published in a registry.
type fetchServer interface {
	// addr is the listener serving path.
	addr(path string) (string, error)
	// registry publishes the connections' data threads.
	registry() *transfer.Registry
	// ledger returns a connection's path ledger when the server exposes
	// it (nil otherwise), by data-thread id.
	ledger(tid int) *transfer.Ledger
	stop()
}

// fetchConfig is how the bench's consumer speaks: Fetch v4 for the bench
// topic's partition 0, streaming through a buffer of the raw receiver's
// size, 500 ms max wait, optionally checking every batch's CRC-32C (only
// in verifyPass: the measured consumer never verifies, see there).
func fetchConfig(maxBytes int32, verify bool) kfetch.Config {
	return kfetch.Config{Topic: topic, Partition: 0, Version: 4, ClientID: "bench",
		MaxBytes: maxBytes, MaxWait: 500 * time.Millisecond, BufSize: recvBufSize, Verify: verify}
}

// consume runs the broker variant once: a lean Fetch client on a locked
// thread (pinned to the consumer CPU) reads offsets [0, end) from the
// path's listener; the connection's data thread is found in the registry
// and pinned to the data CPU for the run.
func consume(ctx context.Context, srv fetchServer, cfg Config, path string, end, bytes int64) (Result, error) {
	addr, err := srv.addr(path)
	if err != nil {
		return Result{}, err
	}
	dataCPU, consCPU := cfg.cpus()
	events, cancel := srv.registry().Subscribe()
	defer cancel()

	type outcome struct {
		r   Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		var o outcome
		defer func() { done <- o }()
		o.r, o.err = consumeOnThread(ctx, srv, cfg, events, addr, path, end, bytes, dataCPU, consCPU)
	}()
	select {
	case o := <-done:
		return o.r, o.err
	case <-time.After(10 * time.Minute):
		return Result{}, fmt.Errorf("consumer did not finish within 10 minutes")
	}
}

// consumeOnThread is one broker run on the calling (locked) thread:
// connect and find the broker's data thread, count both threads around
// fetching every offset, then build the Result.
func consumeOnThread(ctx context.Context, srv fetchServer, cfg Config, events <-chan transfer.Event, addr, path string, end, bytes int64, dataCPU, consCPU int) (Result, error) {
	tc := cfg.Counters
	bc, done, err := connectConsumer(ctx, cfg, events, addr, dataCPU, consCPU)
	if err != nil {
		return Result{}, err
	}
	defer done()
	var ledBefore transfer.Ledger
	if l := srv.ledger(bc.dtid); l != nil {
		ledBefore = *l
	}
	dBefore, cBefore, wBefore, err := bc.read(tc)
	if err != nil {
		return Result{}, err
	}
	// Made after the "before" counters: its getsockopt of SO_RCVLOWAT is
	// one of the consumer's syscalls, as it always was.
	kc := fetchConfig(cfg.FetchMaxBytes, false)
	if cfg.sel != nil {
		kc.ClientID, kc.Keep = cfg.sel.clientID(), cfg.sel.keep
	}
	fc, err := kfetch.New(bc.fd, kc)
	if err != nil {
		return Result{}, err
	}
	if path == "tls" {
		if err := fc.StartTLS(cfg.tls.ClientConfig()); err != nil {
			return Result{}, err
		}
	}
	start := time.Now()
	if err := fetchAll(ctx, fc, end); err != nil {
		return Result{}, err
	}
	secs := time.Since(start).Seconds()
	dAfter, cAfter, wAfter, err := bc.read(tc)
	if err != nil {
		return Result{}, err
	}
	filteredBy, err := checkConsumed(fc, cfg.sel, bytes)
	if err != nil {
		return Result{}, err
	}
	r := Result{
		Path: path, Variant: "broker", Chunk: cfg.Chunk, Seconds: secs,
		ThroughputBytesPerS: float64(bytes) / secs,
		ConsumerReads:       fc.Reads, Fetches: fc.Fetches, RcvLowat: cfg.RcvLowat,
	}
	var led *transfer.Ledger
	if l := srv.ledger(bc.dtid); l != nil {
		d := ledgerSub(*l, ledBefore)
		led = &d
		r.Notes = append(r.Notes, d.Notes...)
		if n := zerocopyNote(d); n != "" {
			r.Notes = append(r.Notes, n)
		}
	}
	r.Record = dataRecord(path, tc.Mode(), start, secs, fc.RecordBytes, dAfter.Sub(dBefore), led)
	if path == "zerocopy" && r.ZerocopyBytes == nil {
		r.Notes = append(r.Notes, "zerocopy: on loopback the kernel copies MSG_ZEROCOPY sends (see the raw variant's zerocopy_copied_bytes; the eBPF probes measure it here)")
	}
	consumerFields(&r, cAfter.Sub(cBefore))
	r.WorkerCPUNs = workerDelta(wBefore, wAfter)
	r.FetchMaxBytes = cfg.FetchMaxBytes
	if cfg.sel != nil {
		setFilterFields(&r, cfg.sel, fc.UsefulBytes, fc.WastedBytes, filteredBy)
	}
	if cfg.Verify {
		n, err := verifyPass(ctx, addr, cfg.FetchMaxBytes, end, bytes, cfg.clientTLS(path))
		if err != nil {
			return Result{}, fmt.Errorf("verify %s after run: %w", path, err)
		}
		r.Notes = append(r.Notes, fmt.Sprintf("verified CRC-32C of %d batches in a second, unmeasured pass over %s", n, path))
	}
	return r, nil
}

// brokerConn is a consumer connection and the two threads a broker run
// counts: the broker's data thread serving it and the consumer's own.
type brokerConn struct {
	fd, dtid, ctid int
}

// connectConsumer places the calling thread, connects to addr, finds and
// places the broker's data thread for the connection and starts counting
// both. done undoes all of it.
func connectConsumer(ctx context.Context, cfg Config, events <-chan transfer.Event, addr string, dataCPU, consCPU int) (bc brokerConn, done func(), err error) {
	var undo []func()
	done = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			done()
		}
	}()
	bc.ctid = unix.Gettid()
	if err := placeThread(0, consCPU, cfg.FIFO); err != nil {
		return bc, done, err
	}
	if bc.fd, err = dialBlocking(addr, cfg.RcvLowat); err != nil {
		return bc, done, err
	}
	fd := bc.fd
	undo = append(undo, func() { unix.Close(fd) })
	if bc.dtid, err = dataThread(ctx, events, localAddr(bc.fd), addr); err != nil {
		return bc, done, err
	}
	if dataCPU >= 0 || cfg.FIFO > 0 {
		// The thread is the server's: free it again when we leave.
		dtid := bc.dtid
		undo = append(undo, func() { releaseThread(dtid) })
	}
	if err := placeThread(bc.dtid, dataCPU, cfg.FIFO); err != nil {
		return bc, done, err
	}
	if err := cfg.Counters.Watch(bc.dtid, bc.ctid); err != nil {
		return bc, done, fmt.Errorf("watch data thread %d and consumer %d: %w", bc.dtid, bc.ctid, err)
	}
	undo = append(undo, func() { cfg.Counters.Unwatch(bc.dtid, bc.ctid) })
	return bc, done, nil
}

// read returns the data thread's counters (its io_uring workers' CPU
// folded in, and that part), and the consumer's.
func (bc brokerConn) read(tc ThreadCounters) (data, consumer metrics.Counters, workers uint64, err error) {
	if data, workers, err = readData(tc, bc.dtid); err != nil {
		return data, consumer, 0, err
	}
	consumer, err = tc.Read(bc.ctid)
	return data, consumer, workers, err
}

// fetchAll fetches offsets [0, end) in order, each response from where
// the last one ended.
func fetchAll(ctx context.Context, fc *kfetch.Client, end int64) error {
	for off := int64(0); off < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := fc.Fetch(off)
		if err != nil {
			return fmt.Errorf("fetch at offset %d: %w", off, err)
		}
		if res.ErrCode != 0 {
			return fmt.Errorf("fetch at offset %d: Kafka error code %d", off, res.ErrCode)
		}
		if res.Next <= off {
			return fmt.Errorf("fetch at offset %d made no progress (high watermark %d)", off, res.HighWatermark)
		}
		off = res.Next
	}
	return nil
}

// verifyPass consumes offsets [0, end) once more over its own connection
// to addr, checking every batch's CRC-32C, and returns the batches
// checked. It runs after the measured pass, outside every counter: a
// consumer computing CRC-32C inline drains its socket slower, which
// throttled the broker's data thread (measured before this split, five
// paths, 256 MiB: broker/raw 0.37-0.81, the data thread sleeping 760
// times a run against 29 for raw), so verifying there changed what was
// measured.
func verifyPass(ctx context.Context, addr string, maxBytes int32, end, bytes int64, tlsCfg *tls.Config) (uint64, error) {
	fc, err := kfetch.Dial(addr, 0, fetchConfig(maxBytes, true))
	if err != nil {
		return 0, err
	}
	defer fc.Close()
	if tlsCfg != nil {
		if err := fc.StartTLS(tlsCfg); err != nil {
			return 0, err
		}
	}
	for off := int64(0); off < end; {
		if err := ctx.Err(); err != nil {
			return fc.Batches, err
		}
		res, err := fc.Fetch(off)
		if err != nil {
			return fc.Batches, fmt.Errorf("fetch at offset %d: %w", off, err)
		}
		if res.ErrCode != 0 || res.Next <= off {
			return fc.Batches, fmt.Errorf("fetch at offset %d: error code %d, next offset %d", off, res.ErrCode, res.Next)
		}
		off = res.Next
	}
	if fc.RecordBytes != bytes {
		return fc.Batches, fmt.Errorf("verified %d record bytes, the log holds %d", fc.RecordBytes, bytes)
	}
	return fc.Batches, nil
}

// ledgerSub is the ledger activity between two snapshots.
func ledgerSub(a, b transfer.Ledger) transfer.Ledger {
	d := a
	d.Calls = map[string]uint64{}
	for k, v := range a.Calls {
		if x := v - b.Calls[k]; x > 0 {
			d.Calls[k] = x
		}
	}
	d.BytesSent -= b.BytesSent
	d.SpanBytes -= b.SpanBytes
	d.ZCSends -= b.ZCSends
	d.ZCNotes -= b.ZCNotes
	d.ZCBytes -= b.ZCBytes
	d.ZCCopiedByte -= b.ZCCopiedByte
	d.ZCCopied -= b.ZCCopied
	d.Notes = a.Notes[min(len(b.Notes), len(a.Notes)):]
	return d
}

// checkConsumed compares what the consumer got with the log: every record
// byte without a filter; with one, exactly the useful bytes the workload's
// arithmetic says, and either fewer record bytes than the log (the broker
// filtered: "broker") or all of them (whole batches: "consumer").
func checkConsumed(fc *kfetch.Client, sel *selection, bytes int64) (string, error) {
	if sel == nil {
		if fc.RecordBytes != bytes {
			return "", fmt.Errorf("consumed %d record bytes, the log holds %d", fc.RecordBytes, bytes)
		}
		return "", nil
	}
	if fc.UsefulBytes != sel.useful {
		return "", fmt.Errorf("selectivity %g: the consumer kept %d bytes, the workload's arithmetic says %d", sel.s, fc.UsefulBytes, sel.useful)
	}
	switch {
	case sel.filter == nil:
		return "", nil
	case fc.RecordBytes == bytes:
		return "consumer", nil
	case fc.RecordBytes < bytes:
		return "broker", nil
	}
	return "", fmt.Errorf("selectivity %g: consumed %d record bytes, more than the log's %d", sel.s, fc.RecordBytes, bytes)
}

// dataThread waits for the server's data thread of the connection from
// local to addr to register, and returns its thread id.
func dataThread(ctx context.Context, events <-chan transfer.Event, local, addr string) (int, error) {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return 0, fmt.Errorf("registry subscription dropped before the data thread of %s appeared", local)
			}
			if ev.Open && ev.Conn.Peer == local {
				return ev.Conn.TID, nil
			}
		case <-deadline:
			return 0, fmt.Errorf("no data thread registered for connection %s -> %s within 10s", local, addr)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// clientTLS is the consumer's TLS configuration for path (nil but for tls).
func (c Config) clientTLS(path string) *tls.Config {
	if path != "tls" || c.tls == nil {
		return nil
	}
	return c.tls.ClientConfig()
}

// serverTLS is the sender's TLS configuration for path (nil but for tls).
func (c Config) serverTLS(path string) *tls.Config {
	if path != "tls" || c.tls == nil {
		return nil
	}
	return c.tls.ServerConfig()
}
