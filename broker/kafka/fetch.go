package kafka

import (
	"fmt"
	"reflect"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchScratch is a connection's reusable Fetch state.
type fetchScratch struct {
	topics  []fetchTopic
	parts   []fetchPartition
	spans   []transfer.Span
	held    []log.ReadResult // released once the response is sent
	changed []<-chan struct{}
	cases   []reflect.SelectCase
	buf     []byte
}

func (f *fetchScratch) release() {
	for i := range f.held {
		f.held[i].Release()
	}
	clear(f.held)
	f.held = f.held[:0]
}

// serveFetch answers a Fetch: it reads slices from the log, waits up to
// max_wait_ms for min_bytes if there is too little, then frames the
// response and hands framing plus file spans to the transfer path.
func (c *conn) serveFetch(h header, req *kmsg.FetchRequest) error {
	f := &c.fetch
	defer f.release()
	if h.version >= 7 && (req.SessionID != 0 || (req.SessionEpoch != -1 && req.SessionEpoch != 0)) {
		// No incremental fetch sessions: make the client send full fetches.
		return c.sendFetch(encodeFetch(f.buf, h, kerr.FetchSessionIDNotFound.Code, 0, nil))
	}
	c.useFilter(h.clientID)
	deadline := time.Now().Add(time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		total, errors := c.readFetch(req)
		now := time.Now()
		if total >= int64(req.MinBytes) || errors || !now.Before(deadline) || c.srv.isClosing() {
			return c.sendFetch(encodeFetch(f.buf, h, 0, 0, f.topics))
		}
		f.release()
		if timer == nil {
			timer = time.NewTimer(deadline.Sub(now))
		} else {
			timer.Reset(deadline.Sub(now))
		}
		f.cases = append(f.cases[:0],
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.srv.closing)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
		for _, ch := range f.changed {
			f.cases = append(f.cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		reflect.Select(f.cases)
		clear(f.cases)
	}
}

func (c *conn) sendFetch(fr fetchFrame) error {
	c.fetch.buf = fr.buf[:0]
	c.filter.body = c.filter.body[:0]
	c.parts = fr.parts(c.parts[:0])
	n, err := c.path.Send(c.fd, c.parts)
	clear(c.parts)
	if err != nil {
		return fmt.Errorf("send %d-byte fetch response (sent %d): %w", fr.size, n, err)
	}
	return nil
}

// readFetch reads every requested partition into the scratch topics and
// returns the record bytes found and whether any partition has an error
// (which, as in Kafka, answers the fetch at once).
func (c *conn) readFetch(req *kmsg.FetchRequest) (total int64, anyErr bool) {
	f := &c.fetch
	c.filter.body = c.filter.body[:0]
	fb := fetchBudget{remaining: int64(req.MaxBytes)}
	fb.flt, fb.view = c.filtering()
	f.topics, f.parts, f.spans = f.topics[:0], f.parts[:0], f.spans[:0]
	clear(f.changed)
	f.changed = f.changed[:0]
	if req.Version < 3 || fb.remaining <= 0 {
		fb.remaining = 1<<31 - 1
	}
	// Partitions are appended to f.parts first and cut into topics after,
	// since appending may move the backing array.
	type cut struct {
		name   string
		lo, hi int
	}
	var cuts []cut
	for _, t := range req.Topics {
		lo := len(f.parts)
		nameErr := log.ValidateTopic(t.Topic)
		for _, p := range t.Partitions {
			fp := fetchPartition{partition: p.Partition, hw: -1, lso: -1, logStart: -1}
			spanLo := len(f.spans)
			code := c.readPartition(t.Topic, nameErr, p, &fp, &fb)
			if code != 0 {
				anyErr = true
			}
			fp.errCode = code
			fp.spans = f.spans[spanLo:len(f.spans):len(f.spans)]
			f.parts = append(f.parts, fp)
		}
		cuts = append(cuts, cut{t.Topic, lo, len(f.parts)})
	}
	for _, ct := range cuts {
		f.topics = append(f.topics, fetchTopic{name: ct.name, partitions: f.parts[ct.lo:ct.hi]})
	}
	return fb.total, anyErr
}

// fetchBudget is what one Fetch has read so far and may still read, and
// the broker-side filter it applies.
type fetchBudget struct {
	total, remaining int64
	flt              *log.Filter
	view             transfer.Viewer
}

// readPartition reads one requested partition into fp (its offsets, and
// spans of the log or filtered bytes) within the fetch's budget, and
// returns its Kafka error code.
func (c *conn) readPartition(topic string, nameErr error, p kmsg.FetchRequestTopicPartition, fp *fetchPartition, fb *fetchBudget) int16 {
	f := &c.fetch
	part, err := c.srv.store.Partition(topic, p.Partition)
	switch {
	case nameErr != nil:
		return kerr.InvalidTopicException.Code
	case err != nil:
		return errCode(err)
	case c.filterCode() != 0:
		return c.filterCode()
	}
	f.changed = append(f.changed, part.Changed())
	start, end := part.StartOffset(), part.EndOffset()
	fp.hw, fp.lso, fp.logStart = end, end, start
	switch {
	case p.FetchOffset < start || p.FetchOffset > end:
		return kerr.OffsetOutOfRange.Code
	case p.FetchOffset == end:
		return 0
	case fb.remaining <= 0 && fb.total > 0:
		return 0 // the response is full; the client asks again
	}
	limit := min(int64(max(p.PartitionMaxBytes, 1)), max(fb.remaining, 1))
	rr, err := part.Read(p.FetchOffset, int32(limit))
	if err != nil {
		return errCode(err)
	}
	fp.hw, fp.lso, fp.logStart = rr.HighWatermark, rr.HighWatermark, rr.LogStartOffset
	var got int64
	for _, sl := range rr.Slices {
		got += sl.Len
	}
	if fb.total > 0 && got > limit {
		// The log returns at least one batch; as in Kafka, only the
		// response's first data may exceed a limit.
		rr.Release()
		return 0
	}
	f.held = append(f.held, rr)
	if fb.flt != nil {
		code := c.filterSlices(fb.flt, fb.view, part, fp, rr.Slices)
		fb.total += got
		fb.remaining -= got
		return code
	}
	for _, sl := range rr.Slices {
		if sl.Len <= 0 {
			continue
		}
		f.spans = append(f.spans, transfer.Span{Fd: int(sl.File.Fd()), Off: sl.Pos, Len: sl.Len})
		fb.total += sl.Len
		fb.remaining -= sl.Len
	}
	return 0
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
