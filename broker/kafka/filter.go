package kafka

import (
	"errors"
	"fmt"
	"strings"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kerr"
)

// A consumer asks for a broker-side filter in its client.id, which every
// Kafka client can set without code changes (kcat -X client.id=...,
// franz-go kgo.ClientID, KafkaJS clientId, Java client.id): the word
// "filter=" at the start of the id or after a space or ';', followed by a
// log.ParseFilter expression up to the next ';' or the end, for example
// "billing filter=a||b" or "filter=key:user-;v2". The id applies to every
// Fetch on the connection; offsets, commits and topic names are the plain
// topic's, so nothing else changes for the client.
//
// Paths that see the bytes (transfer.Viewer: read, mmap) send only the
// matching records; the by-reference paths (sendfile, splice, zerocopy)
// send whole batches and the consumer keeps the matches itself, as a Kafka
// consumer always does. A malformed expression fails every Fetch of the
// connection with INVALID_CONFIG (and one broker log line saying why),
// never a silently unfiltered stream; a compressed batch in a filtered
// read fails its partition with UNSUPPORTED_COMPRESSION_TYPE.
const filterWord = "filter="

// clientFilter extracts the filter expression of a client id; ok is false
// when the id asks for none.
func clientFilter(id string) (expr string, ok bool) {
	for i := 0; i <= len(id)-len(filterWord); i++ {
		if !strings.HasPrefix(id[i:], filterWord) || (i > 0 && id[i-1] != ' ' && id[i-1] != ';') {
			continue
		}
		expr = id[i+len(filterWord):]
		if j := strings.IndexByte(expr, ';'); j >= 0 {
			expr = expr[:j]
		}
		return expr, true
	}
	return "", false
}

// connFilter is a connection's filter, parsed once per distinct client id.
type connFilter struct {
	id     string
	parsed bool
	f      *log.Filter
	err    error
	body   []byte          // filtered record bytes of the current response
	stats  log.FilterStats // totals over the connection
}

// use sets the filter for a Fetch from client id.
func (c *conn) useFilter(id string) {
	cf := &c.filter
	if cf.parsed && cf.id == id {
		return
	}
	cf.id, cf.parsed, cf.f, cf.err = id, true, nil, nil
	if expr, ok := clientFilter(id); ok {
		cf.f, cf.err = log.ParseFilter(expr)
		if cf.err != nil {
			cf.err = fmt.Errorf("client.id %q: %w", id, cf.err)
			c.srv.logf("connection %s: %v; its fetches fail with INVALID_CONFIG until it reconnects with a valid filter", c.peer, cf.err)
		}
	}
}

// filterCode is the error code every partition of a Fetch gets before any
// filtering: INVALID_CONFIG for a malformed filter, else 0.
func (c *conn) filterCode() int16 {
	if c.filter.err != nil {
		return kerr.InvalidConfig.Code
	}
	return 0
}

// filtering reports whether this connection's fetches are filtered in
// the broker: a valid filter was asked for and the path sees the bytes.
func (c *conn) filtering() (*log.Filter, transfer.Viewer) {
	if c.filter.f == nil {
		return nil, nil
	}
	v, ok := c.path.(transfer.Viewer)
	if !ok {
		return nil, nil
	}
	return c.filter.f, v
}

// filterSlices reads the slices through the path's view, filters them and
// puts the result in fp.body; it returns the partition's error code.
func (c *conn) filterSlices(f *log.Filter, v transfer.Viewer, part *log.Partition, fp *fetchPartition, slices []log.Slice) int16 {
	cf := &c.filter
	start := len(cf.body)
	for _, sl := range slices {
		if sl.Len <= 0 {
			continue
		}
		b, err := v.View(transfer.Span{Fd: int(sl.File.Fd()), Off: sl.Pos, Len: sl.Len})
		if err != nil {
			c.srv.logf("connection %s: filtered read of %s at %d: %v", c.peer, sl.File.Name(), sl.Pos, err)
			cf.body = cf.body[:start]
			return kerr.KafkaStorageError.Code
		}
		var st log.FilterStats
		cf.body, st, err = f.Batches(cf.body, b, part.TagIndex(), sl.File.Name(), sl.Pos)
		if err != nil {
			cf.body = cf.body[:start]
			if errors.Is(err, log.ErrFilterCompressed) {
				return kerr.UnsupportedCompressionType.Code
			}
			c.srv.logf("connection %s: filter %q over %s: %v", c.peer, f, sl.File.Name(), err)
			return kerr.CorruptMessage.Code
		}
		cf.stats.Add(st)
	}
	fp.body = cf.body[start:len(cf.body):len(cf.body)]
	return 0
}
