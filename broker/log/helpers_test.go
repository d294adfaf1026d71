package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// batchSpec describes a hand-built Kafka v2 record batch.
type batchSpec struct {
	n      int    // records
	value  int    // value bytes per record
	tag    string // makes values unique
	baseTs int64  // first record timestamp (ms); records are 1 ms apart
	pid    int64  // producer id, -1 for none
	epoch  int16
	seq    int32
	codec  uint16 // compression bits only (records stay plain): the log never decodes them
}

func spec(n int, tag string) batchSpec {
	return batchSpec{n: n, value: 100, tag: tag, baseTs: 1_700_000_000_000, pid: -1, epoch: -1, seq: -1}
}

// makeBatch encodes a valid batch as a producer would send it.
func makeBatch(s batchSpec) []byte {
	var recs []byte
	for i := 0; i < s.n; i++ {
		body := []byte{0}
		body = binary.AppendVarint(body, int64(i)) // timestamp delta
		body = binary.AppendVarint(body, int64(i)) // offset delta
		key := fmt.Sprintf("key-%d", i)
		body = binary.AppendVarint(body, int64(len(key)))
		body = append(body, key...)
		val := []byte(fmt.Sprintf("%s/%d/", s.tag, i))
		for len(val) < s.value {
			val = append(val, byte('a'+len(val)%26))
		}
		body = binary.AppendVarint(body, int64(len(val)))
		body = append(body, val...)
		body = binary.AppendVarint(body, 0) // headers
		recs = binary.AppendVarint(recs, int64(len(body)))
		recs = append(recs, body...)
	}
	b := make([]byte, batchHeaderSize, batchHeaderSize+len(recs))
	binary.BigEndian.PutUint32(b[posBatchLength:], uint32(batchHeaderSize-batchLogOverhead+len(recs)))
	binary.BigEndian.PutUint32(b[posLeaderEpoch:], 0xffffffff)
	b[posMagic] = 2
	binary.BigEndian.PutUint16(b[posAttributes:], s.codec)
	binary.BigEndian.PutUint32(b[posLastOffsetDelta:], uint32(s.n-1))
	binary.BigEndian.PutUint64(b[posBaseTimestamp:], uint64(s.baseTs))
	binary.BigEndian.PutUint64(b[posMaxTimestamp:], uint64(s.baseTs+int64(s.n)-1))
	binary.BigEndian.PutUint64(b[posProducerID:], uint64(s.pid))
	binary.BigEndian.PutUint16(b[posProducerEpoch:], uint16(s.epoch))
	binary.BigEndian.PutUint32(b[posBaseSequence:], uint32(s.seq))
	binary.BigEndian.PutUint32(b[posRecordCount:], uint32(s.n))
	b = append(b, recs...)
	binary.BigEndian.PutUint32(b[posCRC:], crc32.Checksum(b[posAttributes:], castagnoli))
	return b
}

// testConfig is a small-segment config with fsync left to Close.
func testConfig() Config {
	c := DefaultConfig()
	c.SegmentBytes = 64 << 10
	c.IndexIntervalBytes = 1024
	c.Fsync = FsyncNever
	c.RetentionCheck = time.Hour
	return c
}

func openStore(t testing.TB, dir string, cfg Config) *Store {
	t.Helper()
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func mustPartition(t testing.TB, s *Store, topic string, id int32) *Partition {
	t.Helper()
	p, err := s.Partition(topic, id)
	if err != nil {
		t.Fatalf("Partition(%s, %d): %v", topic, id, err)
	}
	return p
}

func mustAppend(t testing.TB, p *Partition, b []byte) AppendResult {
	t.Helper()
	r, err := p.Append(b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return r
}

// crash abandons the store the way kill -9 would: no seal, no snapshot, no
// clean marker; descriptors and the lock are dropped.
func crash(s *Store) {
	close(s.stop)
	<-s.done
	for _, p := range s.partitions() {
		p.appendMu.Lock()
		p.waitFlush() // a killed process's flush goroutine dies with it; here it must not outlive the "crash"
		p.down = true
		p.mu.Lock()
		p.closed = true
		segs := p.segs
		p.segs = nil
		p.mu.Unlock()
		p.appendMu.Unlock()
		for _, sg := range segs {
			sg.release()
		}
	}
	_ = s.lock.Close()
	_ = s.pathLock.release()
}

// stored is one batch as read back from the log.
type stored struct {
	offset int64
	bytes  []byte
}

// readAll reads every batch from offset from through Read, checking that
// slices hold whole, CRC-valid, contiguous batches.
func readAll(t testing.TB, p *Partition, from int64, maxBytes int32) []stored {
	t.Helper()
	var out []stored
	off := from
	for i := 0; off < p.EndOffset(); i++ {
		if i > 1_000_000 {
			t.Fatalf("readAll: no progress at offset %d", off)
		}
		res, err := p.Read(off, maxBytes)
		if err != nil {
			t.Fatalf("Read(%d): %v", off, err)
		}
		if len(res.Slices) == 0 {
			t.Fatalf("Read(%d) below end %d returned no slices", off, p.EndOffset())
		}
		for _, sl := range res.Slices {
			buf := make([]byte, sl.Len)
			if _, err := sl.File.ReadAt(buf, sl.Pos); err != nil {
				t.Fatalf("read slice %+v: %v", sl, err)
			}
			infos, err := validateBatches(buf, nil)
			if err != nil {
				t.Fatalf("slice at offset %d is not whole valid batches: %v", off, err)
			}
			for _, in := range infos {
				b := buf[in.pos : in.pos+in.size]
				base := int64(binary.BigEndian.Uint64(b))
				if len(out) > 0 {
					prev := out[len(out)-1]
					if want := prev.offset + int64(binary.BigEndian.Uint32(prev.bytes[posLastOffsetDelta:])) + 1; base != want {
						t.Fatalf("batch base offset %d, want %d (contiguous)", base, want)
					}
				} else if base > from {
					t.Fatalf("first batch starts at %d, after requested offset %d", base, from)
				}
				out = append(out, stored{base, b})
				off = base + int64(in.lastDelta) + 1
			}
		}
		res.Release()
	}
	return out
}

// sameExceptOwned reports whether stored equals sent apart from the
// broker-owned base offset and leader epoch.
func sameExceptOwned(stored, sent []byte) bool {
	if len(stored) != len(sent) {
		return false
	}
	return string(stored[posMagic:]) == string(sent[posMagic:]) && string(stored[posBatchLength:posLeaderEpoch]) == string(sent[posBatchLength:posLeaderEpoch])
}

func requireErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func segFiles(t testing.TB, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fileSize(t testing.TB, name string) int64 {
	t.Helper()
	st, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
