package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
)

// Broker-side record filters, RocketMQ style: a consumer asks for the
// records whose tag (the value of the record header TagHeader) is one of a
// set, or whose key starts with a prefix, with an expression such as
// "a||b||key:user-". Paths that see the bytes (read, mmap) re-frame each
// batch to hold only the matching records: offsets and timestamps are kept
// (records keep their offset deltas, the batch its base offset and last
// offset delta), so clients commit and resume exactly as on the full log;
// a batch with no match becomes an empty batch (record count 0) that only
// advances the consumer's offset, as a compacted Kafka topic's do.

// TagHeader is the record header whose value is a record's tag.
const TagHeader = "tag"

// Bounds of a filter expression.
const (
	MaxFilterTerms = 128
	MaxFilterTerm  = 249 // bytes of one tag or key prefix
)

// ErrBadFilter wraps every malformed filter expression.
var ErrBadFilter = errors.New("invalid filter expression")

// ErrFilterCompressed: a compressed batch met a filter; the broker does not
// decompress on the serving path.
var ErrFilterCompressed = errors.New("filter over a compressed batch")

// Filter is a parsed filter expression; its methods are safe for
// concurrent use (it is never written after ParseFilter).
type Filter struct {
	expr     string
	tags     [][]byte
	sigs     []uint64            // tagSig of each tag
	set      map[string]struct{} // the tags, when there are many
	prefixes [][]byte
}

// ParseFilter parses terms separated by "||": "key:P" matches records
// whose key starts with P, "tag:T" or a bare T records whose TagHeader
// header is T. Spaces around terms are ignored; a term may not be empty,
// hold spaces or control characters, or be longer than MaxFilterTerm.
func ParseFilter(expr string) (*Filter, error) {
	f := &Filter{expr: expr}
	if strings.TrimSpace(expr) == "" {
		return nil, fmt.Errorf("%w: empty (write tags separated by ||, e.g. a||b, or key:PREFIX)", ErrBadFilter)
	}
	terms := strings.Split(expr, "||")
	if len(terms) > MaxFilterTerms {
		return nil, fmt.Errorf("%w: %d terms, at most %d", ErrBadFilter, len(terms), MaxFilterTerms)
	}
	for i, t := range terms {
		t = strings.TrimSpace(t)
		kind, val := "tag", t
		if k, v, ok := strings.Cut(t, ":"); ok && (k == "tag" || k == "key") {
			kind, val = k, v
		}
		if err := checkTerm(val); err != nil {
			return nil, fmt.Errorf("%w: term %d %q: %v (write tags separated by ||, e.g. a||b, or key:PREFIX)", ErrBadFilter, i+1, t, err)
		}
		if kind == "key" {
			f.prefixes = append(f.prefixes, []byte(val))
			continue
		}
		f.tags = append(f.tags, []byte(val))
		f.sigs = append(f.sigs, tagSig([]byte(val)))
	}
	if len(f.tags) > 8 {
		f.set = make(map[string]struct{}, len(f.tags))
		for _, t := range f.tags {
			f.set[string(t)] = struct{}{}
		}
	}
	return f, nil
}

func checkTerm(v string) error {
	switch {
	case v == "":
		return errors.New("empty term")
	case len(v) > MaxFilterTerm:
		return fmt.Errorf("%d bytes, at most %d", len(v), MaxFilterTerm)
	case strings.ContainsAny(v, "|"):
		return errors.New("a single | (terms are separated by ||)")
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

// String is the expression as given.
func (f *Filter) String() string { return f.expr }

// Match reports whether a record with this key and tag (hasTag false: no
// TagHeader header) is wanted.
func (f *Filter) Match(key, tag []byte, hasTag bool) bool {
	if hasTag && f.set != nil {
		if _, ok := f.set[string(tag)]; ok {
			return true
		}
	} else if hasTag {
		for _, t := range f.tags {
			if bytes.Equal(t, tag) {
				return true
			}
		}
	}
	for _, p := range f.prefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// tagSig is a tag's two bits in a 64-bit batch signature (a Bloom filter
// with k = 2): the tag-hash idea of RocketMQ's ConsumeQueue, per batch.
func tagSig(tag []byte) uint64 {
	v := uint64(14695981039346656037) // FNV-1a, inline: hash/fnv allocates per call
	for _, c := range tag {
		v ^= uint64(c)
		v *= 1099511628211
	}
	return 1<<(v&63) | 1<<((v>>6)&63)
}

// mayMatch reports whether a batch with signature sig can hold a match;
// false is certain. A filter with key prefixes cannot use signatures.
func (f *Filter) mayMatch(sig uint64) bool {
	if len(f.prefixes) > 0 {
		return true
	}
	for _, s := range f.sigs {
		if sig&s == s {
			return true
		}
	}
	return false
}

// Record is one decoded record of an uncompressed v2 batch.
type Record struct {
	Raw    []byte // the whole record, length varint included
	Key    []byte // nil for a null key
	Tag    []byte // value of the first TagHeader header
	HasTag bool
}

// Records calls fn for each record of an uncompressed v2 batch, in order,
// and fails on a record that does not decode.
func Records(batch []byte, fn func(Record)) error {
	if len(batch) < batchHeaderSize {
		return fmt.Errorf("%w: %d bytes, shorter than a batch header", ErrCorruptMessage, len(batch))
	}
	h := parseHeader(batch)
	if c := h.attrs & attrCompressionMask; c != 0 {
		return fmt.Errorf("%w: batch at offset %d uses codec %d", ErrFilterCompressed, h.baseOffset, c)
	}
	rec := batch[batchHeaderSize:]
	for i := int32(0); i < h.count; i++ {
		r, rest, err := decodeRecord(rec)
		if err != nil {
			return fmt.Errorf("%w: batch at offset %d, record %d: %v", ErrCorruptMessage, h.baseOffset, i, err)
		}
		fn(r)
		rec = rest
	}
	return nil
}

// decodeRecord decodes the record at the start of b.
func decodeRecord(b []byte) (Record, []byte, error) {
	length, n := binary.Varint(b)
	if n <= 0 || length < 0 || int64(len(b)-n) < length {
		return Record{}, nil, errors.New("bad record length")
	}
	r := Record{Raw: b[:n+int(length)]}
	body, rest := b[n:n+int(length)], b[n+int(length):]
	if len(body) < 1 {
		return r, nil, errors.New("record without attributes")
	}
	body = body[1:]
	for range 2 { // timestamp delta, offset delta
		_, k := binary.Varint(body)
		if k <= 0 {
			return r, nil, errors.New("bad delta")
		}
		body = body[k:]
	}
	key, body, err := varBytes(body)
	if err != nil {
		return r, nil, fmt.Errorf("key: %v", err)
	}
	r.Key = key
	if _, body, err = varBytes(body); err != nil {
		return r, nil, fmt.Errorf("value: %v", err)
	}
	nh, k := binary.Varint(body)
	if k <= 0 || nh < 0 {
		return r, nil, errors.New("bad header count")
	}
	body = body[k:]
	for j := int64(0); j < nh; j++ {
		var hk, hv []byte
		if hk, body, err = varBytes(body); err != nil {
			return r, nil, fmt.Errorf("header %d key: %v", j, err)
		}
		if hv, body, err = varBytes(body); err != nil {
			return r, nil, fmt.Errorf("header %d value: %v", j, err)
		}
		if !r.HasTag && string(hk) == TagHeader {
			r.Tag, r.HasTag = hv, true
		}
	}
	return r, rest, nil
}

// varBytes decodes a varint-length byte string (-1: null).
func varBytes(b []byte) (v, rest []byte, err error) {
	l, k := binary.Varint(b)
	if k <= 0 || l < -1 || int64(len(b)-k) < l {
		return nil, nil, errors.New("bad length")
	}
	if l < 0 {
		return nil, b[k:], nil
	}
	return b[k : k+int(l)], b[k+int(l):], nil
}

// FilterStats counts what Filter.Batches did, for the ledgers and bench.
type FilterStats struct {
	Batches     int   // batches read
	Whole       int   // sent unchanged (every record matched, or a control batch)
	Reframed    int   // sent with only their matching records
	Emptied     int   // had no match: folded into empty batches
	Skipped     int   // of those, known from the tag index without decoding
	RecordsIn   int64 // records decoded or skipped
	RecordsOut  int64 // records sent
	InBytes     int64
	OutBytes    int64
	UsefulBytes int64 // of OutBytes, the bytes of matching records
}

// Add accumulates o into s.
func (s *FilterStats) Add(o FilterStats) {
	s.Batches += o.Batches
	s.Whole += o.Whole
	s.Reframed += o.Reframed
	s.Emptied += o.Emptied
	s.Skipped += o.Skipped
	s.RecordsIn += o.RecordsIn
	s.RecordsOut += o.RecordsOut
	s.InBytes += o.InBytes
	s.OutBytes += o.OutBytes
	s.UsefulBytes += o.UsefulBytes
}

// Batches appends to dst the whole batches of src (bytes read from the
// segment seg at position pos) with only the records f matches, and
// returns the result. Runs of batches without a match become one empty
// batch each (header only, record count 0) spanning their offsets. idx,
// if not nil, is consulted and filled with each batch's tag signature, so
// later reads skip batches without a match without decoding them.
// Compressed batches fail with ErrFilterCompressed; nothing partial is
// appended on error.
func (f *Filter) Batches(dst, src []byte, idx *TagIndex, seg string, pos int64) ([]byte, FilterStats, error) {
	var st FilterStats
	start := len(dst)
	empty := -1 // position in dst of the pending empty batch
	for off := 0; off < len(src); {
		if len(src)-off < batchHeaderSize {
			return dst[:start], st, fmt.Errorf("%w: %d trailing bytes at %s position %d", ErrCorruptMessage, len(src)-off, seg, pos+int64(off))
		}
		h := parseHeader(src[off:])
		if h.magic != 2 || h.size < batchHeaderSize || h.size > int64(len(src)-off) {
			return dst[:start], st, fmt.Errorf("%w: bad batch header at %s position %d", ErrCorruptMessage, seg, pos+int64(off))
		}
		batch := src[off : off+int(h.size)]
		st.Batches++
		st.InBytes += h.size
		st.RecordsIn += int64(h.count)
		var ok bool
		var err error
		dst, ok, err = f.batch(dst, batch, h, idx, indexKey{seg, pos + int64(off)}, &st)
		if err != nil {
			return dst[:start], st, err
		}
		switch {
		case ok:
			empty = -1
		case empty >= 0 && foldEmpty(dst[empty:], h):
			st.Emptied++
		default:
			st.Emptied++
			empty = len(dst)
			dst = appendEmpty(dst, batch)
		}
		off += int(h.size)
	}
	for b := dst[start:]; len(b) > 0; {
		// Seal the empty batches: their CRC was left for last.
		bh := parseHeader(b)
		if bh.count == 0 {
			binary.BigEndian.PutUint32(b[posCRC:], crc32.Checksum(b[posAttributes:batchHeaderSize], castagnoli))
		}
		b = b[bh.size:]
	}
	st.OutBytes = int64(len(dst) - start)
	return dst, st, nil
}

// batch appends batch's matching records as a batch and reports whether
// anything was appended (false: no match).
func (f *Filter) batch(dst, batch []byte, h header, idx *TagIndex, k indexKey, st *FilterStats) ([]byte, bool, error) {
	if h.attrs&attrControl != 0 {
		st.Whole++
		st.RecordsOut += int64(h.count)
		return append(dst, batch...), true, nil
	}
	crc := binary.BigEndian.Uint32(batch[posCRC:])
	if sig, known := idx.lookup(k, crc, h.size); known && !f.mayMatch(sig) {
		st.Skipped++
		return dst, false, nil
	}
	start := len(dst)
	dst = append(dst, batch[:batchHeaderSize]...)
	var sig uint64
	var kept int32
	err := Records(batch, func(r Record) {
		if r.HasTag {
			sig |= tagSig(r.Tag)
		}
		if f.Match(r.Key, r.Tag, r.HasTag) {
			dst = append(dst, r.Raw...)
			st.UsefulBytes += int64(len(r.Raw))
			kept++
		}
	})
	if err != nil {
		return dst[:start], false, err
	}
	idx.store(k, crc, h.size, sig)
	st.RecordsOut += int64(kept)
	switch {
	case kept == 0:
		return dst[:start], false, nil
	case kept == h.count:
		st.Whole++
		st.UsefulBytes += batchHeaderSize
		return append(dst[:start], batch...), true, nil
	}
	st.Reframed++
	st.UsefulBytes += batchHeaderSize
	out := dst[start:]
	binary.BigEndian.PutUint32(out[posBatchLength:], uint32(len(out)-batchLogOverhead))
	binary.BigEndian.PutUint32(out[posRecordCount:], uint32(kept))
	binary.BigEndian.PutUint32(out[posCRC:], crc32.Checksum(out[posAttributes:], castagnoli))
	return dst, true, nil
}

// attrControl marks a transaction marker batch, passed through whole.
const attrControl = 0x20

// appendEmpty appends batch's header as an empty batch: record count 0,
// its base offset, last offset delta and timestamps kept (CRC set later).
func appendEmpty(dst, batch []byte) []byte {
	dst = append(dst, batch[:batchHeaderSize]...)
	e := dst[len(dst)-batchHeaderSize:]
	binary.BigEndian.PutUint32(e[posBatchLength:], batchHeaderSize-batchLogOverhead)
	binary.BigEndian.PutUint32(e[posRecordCount:], 0)
	return dst
}

// foldEmpty extends the empty batch e over the following batch h when the
// offset range still fits its last offset delta.
func foldEmpty(e []byte, h header) bool {
	eh := parseHeader(e)
	last := h.baseOffset + int64(h.lastDelta) - eh.baseOffset
	if last < 0 || last > 1<<31-1 || h.producerID != eh.producerID {
		return false
	}
	binary.BigEndian.PutUint32(e[posLastOffsetDelta:], uint32(last))
	if h.maxTs > eh.maxTs {
		binary.BigEndian.PutUint64(e[posMaxTimestamp:], uint64(h.maxTs))
	}
	return true
}

// indexKey names a batch by segment file and position.
type indexKey struct {
	seg string
	pos int64
}

// sigEntry is a batch's tag signature, valid while the batch at the key
// still has this CRC and size.
type sigEntry struct {
	crc  uint32
	size int32
	sig  uint64
}

// maxIndexEntries bounds a TagIndex (about 80 bytes an entry); when it is
// full it starts over.
const maxIndexEntries = 1 << 20

// TagIndex holds the tag signature of every batch a filter has decoded, so
// later filtered reads skip batches without a match without decoding them
// (RocketMQ keeps a tag hash per message in its ConsumeQueue for this). It
// is filled on first read rather than on append, so the produce path pays
// nothing; entries are checked against the batch's CRC and size. The zero
// value is ready; a nil *TagIndex does nothing.
type TagIndex struct {
	mu sync.Mutex
	m  map[indexKey]sigEntry
}

func (x *TagIndex) lookup(k indexKey, crc uint32, size int64) (uint64, bool) {
	if x == nil {
		return 0, false
	}
	x.mu.Lock()
	e, ok := x.m[k]
	x.mu.Unlock()
	if !ok || e.crc != crc || int64(e.size) != size {
		return 0, false
	}
	return e.sig, true
}

func (x *TagIndex) store(k indexKey, crc uint32, size int64, sig uint64) {
	if x == nil {
		return
	}
	x.mu.Lock()
	if x.m == nil || len(x.m) >= maxIndexEntries {
		x.m = make(map[indexKey]sigEntry)
	}
	x.m[k] = sigEntry{crc: crc, size: int32(size), sig: sig}
	x.mu.Unlock()
}

// Len is the number of batches indexed.
func (x *TagIndex) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.m)
}

// TagIndex is the partition's batch tag index.
func (p *Partition) TagIndex() *TagIndex { return &p.tags }
