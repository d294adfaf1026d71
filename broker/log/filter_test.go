package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// testRec is a record the tests build and expect back.
type testRec struct {
	offset int64
	key    string // "" for a null key
	tag    string // "" for no tag header
}

// kmsgBatch encodes records (consecutive offsets from base) with franz-go's
// encoder, an implementation independent of the filter's decoder.
func kmsgBatch(t testing.TB, base int64, recs []testRec, codec int16) []byte {
	t.Helper()
	var body []byte
	for i, r := range recs {
		rec := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), Value: fmt.Appendf(nil, "value-%d", r.offset)}
		if r.key != "" {
			rec.Key = []byte(r.key)
		}
		rec.Headers = append(rec.Headers, kmsg.Header{Key: "other", Value: []byte("x")})
		if r.tag != "" {
			rec.Headers = append(rec.Headers, kmsg.Header{Key: TagHeader, Value: []byte(r.tag)})
		}
		rec.Length = int32(len(rec.AppendTo(nil)) - 1)
		body = rec.AppendTo(body)
	}
	b := kmsg.RecordBatch{FirstOffset: base, Magic: 2, Attributes: codec, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_000 + int64(len(recs)-1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(recs)), Records: body}
	b.Length = int32(batchHeaderSize - batchLogOverhead + len(body))
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[posCRC:], crc32.Checksum(out[posAttributes:], castagnoli))
	return out
}

// decodeKmsg decodes a filtered record set with franz-go and checks each
// batch's CRC-32C; it returns the records and the offset a client resumes
// from (after each batch's last offset delta).
func decodeKmsg(t testing.TB, b []byte) (recs []testRec, next int64) {
	t.Helper()
	for len(b) > 0 {
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b); err != nil {
			t.Fatalf("franz-go cannot decode the filtered batch: %v", err)
		}
		size := int(rb.Length) + batchLogOverhead
		if got := crc32.Checksum(b[posAttributes:size], castagnoli); got != uint32(rb.CRC) {
			t.Fatalf("batch at %d: CRC %08x, header says %08x", rb.FirstOffset, got, uint32(rb.CRC))
		}
		raw := rb.Records
		for i := int32(0); i < rb.NumRecords; i++ {
			var r kmsg.Record
			if err := r.ReadFrom(raw); err != nil {
				t.Fatalf("batch at %d record %d: %v", rb.FirstOffset, i, err)
			}
			n := int(r.Length) + len(binary.AppendVarint(nil, int64(r.Length)))
			raw = raw[n:]
			tr := testRec{offset: rb.FirstOffset + int64(r.OffsetDelta), key: string(r.Key)}
			for _, h := range r.Headers {
				if h.Key == TagHeader {
					tr.tag = string(h.Value)
					break
				}
			}
			recs = append(recs, tr)
		}
		if len(raw) != 0 {
			t.Fatalf("batch at %d: %d bytes after its %d records", rb.FirstOffset, len(raw), rb.NumRecords)
		}
		next = rb.FirstOffset + int64(rb.LastOffsetDelta) + 1
		b = b[size:]
	}
	return recs, next
}

// mixedLog is 10 batches of 20 records; record i has tag "t<i%5>" (none
// when i%7 == 0) and key "k<i%3>-<i>"; batches 3 and 4 hold only tag "z".
func mixedLog(t testing.TB) ([]byte, []testRec) {
	var log []byte
	var all []testRec
	off := int64(100)
	for b := range 10 {
		var recs []testRec
		for range 20 {
			r := testRec{offset: off, key: fmt.Sprintf("k%d-%d", off%3, off), tag: fmt.Sprintf("t%d", off%5)}
			if off%7 == 0 {
				r.tag = ""
			}
			if b == 3 || b == 4 {
				r.tag = "z"
			}
			recs = append(recs, r)
			off++
		}
		log = append(log, kmsgBatch(t, recs[0].offset, recs, 0)...)
		all = append(all, recs...)
	}
	return log, all
}

// clientSide is the ground truth: the full log filtered record by record.
func clientSide(all []testRec, tags []string, prefixes []string) []testRec {
	var out []testRec
	for _, r := range all {
		ok := r.tag != "" && slices.Contains(tags, r.tag)
		for _, p := range prefixes {
			if len(r.key) >= len(p) && r.key[:len(p)] == p {
				ok = true
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func TestFilterBatches(t *testing.T) {
	src, all := mixedLog(t)
	cases := []struct {
		expr     string
		tags     []string
		prefixes []string
	}{
		{"t1", []string{"t1"}, nil},
		{"t1||t3", []string{"t1", "t3"}, nil},
		{" tag:t2 || z ", []string{"t2", "z"}, nil},
		{"z", []string{"z"}, nil},
		{"nothing", []string{"nothing"}, nil},
		{"key:k2-", nil, []string{"k2-"}},
		{"t0||key:k1-1", []string{"t0"}, []string{"k1-1"}},
		{"t0||t1||t2||t3||t4||z||key:k", []string{"t0", "t1", "t2", "t3", "t4", "z"}, []string{"k"}},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			f, err := ParseFilter(c.expr)
			if err != nil {
				t.Fatal(err)
			}
			var idx TagIndex
			want := clientSide(all, c.tags, c.prefixes)
			for pass := range 2 { // the second pass uses the index
				out, st, err := f.Batches([]byte("keep"), src, &idx, "seg", 0)
				if err != nil {
					t.Fatal(err)
				}
				if string(out[:4]) != "keep" {
					t.Fatalf("dst prefix overwritten")
				}
				got, next := decodeKmsg(t, out[4:])
				if !slices.Equal(got, want) {
					t.Fatalf("pass %d: got %d records %v\nwant %d %v", pass, len(got), got, len(want), want)
				}
				if end := all[len(all)-1].offset + 1; next != end {
					t.Errorf("pass %d: consumer resumes at %d, want %d (the offset after the log)", pass, next, end)
				}
				if st.RecordsOut != int64(len(want)) || st.Batches != 10 || st.OutBytes != int64(len(out)-4) {
					t.Errorf("pass %d: stats %+v, want %d records out of 10 batches", pass, st, len(want))
				}
				if pass == 1 && len(c.prefixes) == 0 && st.Skipped != st.Emptied {
					t.Errorf("index pass skipped %d of %d batches without a match", st.Skipped, st.Emptied)
				}
			}
		})
	}
}

// TestFilterResume filters from a batch in the middle, as a consumer
// restarted from a committed offset reads: the log returns the batch
// holding the offset, and the client drops records below it.
func TestFilterResume(t *testing.T) {
	src, all := mixedLog(t)
	f, err := ParseFilter("t2||t4")
	if err != nil {
		t.Fatal(err)
	}
	want := clientSide(all, []string{"t2", "t4"}, nil)
	for cut := 0; cut < 10; cut++ {
		pos := 0
		for range cut { // skip cut batches
			pos += int(parseHeader(src[pos:]).size)
		}
		head, _, err := f.Batches(nil, src[:pos], nil, "seg", 0)
		if err != nil {
			t.Fatal(err)
		}
		tail, _, err := f.Batches(nil, src[pos:], nil, "seg", int64(pos))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := decodeKmsg(t, head)
		b, _ := decodeKmsg(t, tail)
		if got := append(a, b...); !slices.Equal(got, want) {
			t.Fatalf("cut at batch %d: got %v, want %v", cut, got, want)
		}
	}
}

func TestFilterRefusesCompressed(t *testing.T) {
	b := kmsgBatch(t, 0, []testRec{{offset: 0, tag: "a"}}, 1)
	f, _ := ParseFilter("a")
	out, _, err := f.Batches([]byte("x"), b, nil, "seg", 0)
	if !errors.Is(err, ErrFilterCompressed) || string(out) != "x" {
		t.Fatalf("compressed batch: err %v, out %q; want ErrFilterCompressed and nothing appended", err, out)
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, expr := range []string{"", "  ", "a||", "||a", "a|b", "a||b c", "key:", "tag:", "a\x00", string(make([]byte, 300))} {
		if _, err := ParseFilter(expr); !errors.Is(err, ErrBadFilter) {
			t.Errorf("ParseFilter(%q): err %v, want ErrBadFilter", expr, err)
		}
	}
	many := "a"
	for range MaxFilterTerms {
		many += "||a"
	}
	if _, err := ParseFilter(many); !errors.Is(err, ErrBadFilter) {
		t.Errorf("%d terms accepted", MaxFilterTerms+1)
	}
}

// FuzzFilterBatches feeds arbitrary bytes as a segment's content: the
// filter must fail cleanly or produce batches franz-go decodes.
func FuzzFilterBatches(f *testing.F) {
	src, _ := mixedLog(f)
	f.Add(src, "t1||key:k2")
	f.Add(src[:200], "z")
	f.Fuzz(func(t *testing.T, b []byte, expr string) {
		flt, err := ParseFilter(expr)
		if err != nil {
			return
		}
		out, _, err := flt.Batches(nil, b, nil, "seg", 0)
		if err != nil {
			return
		}
		for len(out) > 0 {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(out); err != nil {
				t.Fatalf("filter output does not decode: %v", err)
			}
			out = out[int(rb.Length)+batchLogOverhead:]
		}
	})
}
