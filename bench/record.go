package bench

import (
	"fmt"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/recordbatch"
	"github.com/copyscope/copyscope/metrics"
)

// nextOffset walks the batch headers of a slice and returns the offset
// after its last batch.
func nextOffset(s log.Slice) (int64, error) {
	h := make(recordbatch.Header, recordbatch.HeaderSize)
	next := int64(-1)
	for pos := s.Pos; pos < s.Pos+s.Len; {
		if _, err := s.File.ReadAt(h, pos); err != nil {
			return 0, fmt.Errorf("read batch header at %d of %s: %w", pos, s.File.Name(), err)
		}
		if h.ShorterThanHeader() {
			return 0, fmt.Errorf("batch at %d of %s: length %d is shorter than a header", pos, s.File.Name(), h.Length())
		}
		next = h.NextOffset()
		pos += h.Size()
	}
	return next, nil
}

// dataRecord turns the data thread's counter delta, plus what the path's
// ledger knows exactly, into the metrics-contract part of a Result.
func dataRecord(path string, mode metrics.Mode, start time.Time, secs float64, delivered int64, d metrics.Counters, led *transfer.Ledger) metrics.Record {
	d.DeliveredBytes = uint64(delivered)
	d.Measured |= metrics.FDelivered
	if led != nil {
		if !d.Measured.Has(metrics.FSyscalls) {
			var n uint64
			for _, c := range led.Calls {
				n += c
			}
			d.Syscalls, d.SyscallsByName = n, led.Calls
			d.Measured |= metrics.FSyscalls | metrics.FSyscallsByName
		}
		if (path == "zerocopy" || path == "uring-zc") && !d.Measured.Has(metrics.FZerocopy) {
			d.ZerocopyBytes, d.ZerocopyCopiedBytes = led.ZCBytes, led.ZCCopiedByte
			d.Measured |= metrics.FZerocopy
		}
		if led.Ops != nil && !d.Measured.Has(metrics.FUringOps) {
			d.UringOps = metrics.UringOps{}
			for op, o := range led.Ops {
				d.UringOps[op] = metrics.UringOp{Submitted: o.Submitted, Completed: o.Completed, Failed: o.Failed, Bytes: o.Bytes}
			}
			d.Measured |= metrics.FUringOps
		}
	}
	return metrics.FromDelta(start.Add(time.Duration(secs*float64(time.Second))), time.Duration(secs*float64(time.Second)), mode,
		metrics.Subject{Kind: metrics.KindPath, Name: path}, d)
}

// consumerFields fills the consumer's own thread counters into r.
func consumerFields(r *Result, d metrics.Counters) {
	if d.Measured.Has(metrics.FCPU) {
		v := d.CPUNs
		r.ConsumerCPUNs = &v
	}
	if d.Measured.Has(metrics.FCtxSwitches) {
		v, iv := d.CtxVoluntary, d.CtxInvoluntary
		r.ConsumerCtxVoluntary, r.ConsumerCtxInvoluntary = &v, &iv
	}
}

// zerocopyNote says what the kernel did with MSG_ZEROCOPY sends: on
// loopback it copies them all, and every output must say so.
func zerocopyNote(led transfer.Ledger) string {
	if led.ZCBytes == 0 {
		return ""
	}
	if led.ZCCopiedByte == led.ZCBytes {
		return fmt.Sprintf("zerocopy: the kernel copied all %d MSG_ZEROCOPY bytes (SO_EE_CODE_ZEROCOPY_COPIED on %d of %d notifications): no zero-copy happened", led.ZCBytes, led.ZCCopied, led.ZCNotes)
	}
	return fmt.Sprintf("zerocopy: the kernel copied %d of %d MSG_ZEROCOPY bytes (%d of %d notifications flagged copied)", led.ZCCopiedByte, led.ZCBytes, led.ZCCopied, led.ZCNotes)
}

// rawRecord runs the raw variant once and builds its Result.
func rawRecord(path string, spans []transfer.Span, bytes int64, cfg Config) (Result, error) {
	sendCPU, recvCPU := cfg.cpus()
	rr, err := runRaw(path, transfer.Options{Chunk: cfg.Chunk, NoCork: cfg.NoCork}, spans, cfg.Counters, sendCPU, recvCPU, cfg.FIFO, cfg.RcvLowat, cfg.congestion(), cfg.serverTLS(path), cfg.clientTLS(path))
	if err != nil {
		return Result{}, err
	}
	r := Result{
		Path: path, Variant: "raw", Chunk: cfg.Chunk, Seconds: rr.seconds,
		ThroughputBytesPerS: float64(bytes) / rr.seconds,
		ConsumerReads:       rr.sink.reads, RcvLowat: cfg.RcvLowat,
	}
	r.Record = dataRecord(path, cfg.Counters.Mode(), rr.start, rr.seconds, bytes, rr.sender.delta, &rr.ledger)
	consumerFields(&r, rr.sink.delta)
	r.WorkerCPUNs = rr.sender.workers
	for _, n := range rr.ledger.Notes {
		if n != transfer.ZerocopyCopiedNote { // zerocopyNote says it with numbers
			r.Notes = append(r.Notes, n)
		}
	}
	if n := zerocopyNote(rr.ledger); n != "" {
		r.Notes = append(r.Notes, n)
	}
	return r, nil
}
