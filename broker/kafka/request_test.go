package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// frameOf encodes req the way a client does and strips the size prefix.
func frameOf(t testing.TB, req kmsg.Request, corrID int32) []byte {
	t.Helper()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("test-client"))
	b := f.AppendRequest(nil, req, corrID)
	if got := int(binary.BigEndian.Uint32(b)); got != len(b)-4 {
		t.Fatalf("formatter size %d, frame %d", got, len(b)-4)
	}
	return b[4:]
}

func TestDecodeRequestRoundTrip(t *testing.T) {
	for _, r := range servedAPIs() {
		for v := r.min; v <= r.max; v++ {
			req := kmsg.RequestForKey(r.key)
			req.SetVersion(v)
			if m, ok := req.(*kmsg.MetadataRequest); ok {
				m.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("orders")}}
			}
			h, got, err := decodeRequest(frameOf(t, req, 77))
			if err != nil {
				t.Fatalf("%s v%d: %v", kmsg.NameForKey(r.key), v, err)
			}
			if h.key != r.key || h.version != v || h.corrID != 77 || h.clientID != "test-client" || h.flexible != req.IsFlexible() {
				t.Fatalf("%s v%d: header %+v", kmsg.NameForKey(r.key), v, h)
			}
			if !bytes.Equal(got.AppendTo(nil), req.AppendTo(nil)) {
				t.Fatalf("%s v%d: body does not round-trip", kmsg.NameForKey(r.key), v)
			}
		}
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = -1
	produce.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: bytes.Repeat([]byte{1}, 100)}}}}
	full := frameOf(t, produce, 1)

	fc := kmsg.NewPtrDescribeACLsRequest() // ACLs are not served
	fc.SetVersion(1)
	fetch13 := kmsg.NewPtrFetchRequest()
	fetch13.SetVersion(13)

	cases := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, errTruncated},
		{"short header", []byte{0, 0, 0, 9}, errTruncated},
		{"no client id", full[:8], errTruncated},
		{"client id past end", append(append([]byte{}, full[:8]...), 0x7f, 0xff, 'x'), errTruncated},
		{"truncated body", full[:len(full)-30], errTruncated},
		{"unknown key", append([]byte{0x7f, 0x00, 0, 0, 0, 0, 0, 1}, 0xff, 0xff), errUnsupported},
		{"version past kmsg", append([]byte{0, 1, 0x7f, 0, 0, 0, 0, 1}, 0xff, 0xff), errUnsupported},
		{"not served", frameOf(t, fc, 2), errUnsupported},
		{"version not served", frameOf(t, fetch13, 3), errUnsupported},
	}
	for _, c := range cases {
		_, req, err := decodeRequest(c.frame)
		if !errors.Is(err, c.want) || req != nil {
			t.Errorf("%s: got %v (req %v), want %v", c.name, err, req, c.want)
		}
	}
}

func TestApiVersionsResponseHeaderV0(t *testing.T) {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "t", "1"
	h, _, err := decodeRequest(frameOf(t, req, 5))
	if err != nil || !h.flexible {
		t.Fatalf("decode: %v flexible=%v", err, h.flexible)
	}
	b := appendResponse(nil, h, apiVersionsResponse(3, 0))
	// size, correlation id, then straight into the body: no header tags.
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	if err := resp.ReadFrom(b[8:]); err != nil {
		t.Fatalf("ApiVersions v3 response does not parse with header v0: %v", err)
	}
	if len(resp.ApiKeys) != len(servedAPIs()) || resp.ErrorCode != 0 {
		t.Fatalf("resp %+v", resp)
	}
}

// TestEncodeFetchParses checks the hand-written Fetch framing against
// kmsg's decoder for every served version, with record bytes from a file.
func TestEncodeFetchParses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	topics := []fetchTopic{
		{name: "a", partitions: []fetchPartition{
			{partition: 0, hw: 10, lso: 10, logStart: 2, spans: []transfer.Span{{Fd: fd, Off: 100, Len: 400}, {Fd: fd, Off: 1000, Len: 50}}},
			{partition: 1, errCode: 1, hw: 3, lso: 3, logStart: 0},
		}},
		{name: "bb", partitions: []fetchPartition{{partition: 2, hw: 99, lso: 99, spans: []transfer.Span{{Fd: fd, Off: 0, Len: 3000}}}}},
	}
	for v := int16(4); v <= 12; v++ {
		h := header{key: 1, version: v, corrID: 42, flexible: v >= 12}
		fr := encodeFetch(nil, h, 0, 0, topics)
		var wire []byte
		for _, p := range fr.parts(nil) {
			if len(p.Bytes) > 0 {
				wire = append(wire, p.Bytes...)
				continue
			}
			wire = append(wire, data[p.Span.Off:p.Span.Off+p.Span.Len]...)
		}
		if int64(len(wire)) != fr.size || int(binary.BigEndian.Uint32(wire)) != len(wire)-4 {
			t.Fatalf("v%d: size prefix %d, frame %d, computed %d", v, binary.BigEndian.Uint32(wire), len(wire), fr.size)
		}
		if int32(binary.BigEndian.Uint32(wire[4:])) != 42 {
			t.Fatalf("v%d: correlation id", v)
		}
		body := wire[8:]
		if h.flexible {
			body = body[1:]
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("v%d: kmsg cannot parse: %v", v, err)
		}
		if len(resp.Topics) != 2 || resp.Topics[0].Topic != "a" || resp.Topics[1].Topic != "bb" {
			t.Fatalf("v%d: topics %+v", v, resp.Topics)
		}
		p0, p1, p2 := resp.Topics[0].Partitions[0], resp.Topics[0].Partitions[1], resp.Topics[1].Partitions[0]
		want0 := append(append([]byte{}, data[100:500]...), data[1000:1050]...)
		if !bytes.Equal(p0.RecordBatches, want0) || p0.HighWatermark != 10 || p0.LastStableOffset != 10 {
			t.Fatalf("v%d: partition 0 %+v", v, p0)
		}
		if v >= 5 && p0.LogStartOffset != 2 {
			t.Fatalf("v%d: log start %d", v, p0.LogStartOffset)
		}
		if p1.ErrorCode != 1 || len(p1.RecordBatches) != 0 || p2.Partition != 2 || !bytes.Equal(p2.RecordBatches, data) {
			t.Fatalf("v%d: partitions 1/2 wrong", v)
		}
	}
}

// FuzzDecodeRequest feeds arbitrary frames to the request decoder: it must
// never panic, and a decoded request must re-encode.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range servedAPIs() {
		req := kmsg.RequestForKey(r.key)
		req.SetVersion(r.max)
		f.Add(frameOf(f, req, 1))
		req.SetVersion(r.min)
		f.Add(frameOf(f, req, 2))
	}
	f.Add([]byte{0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0x80})
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, req, err := decodeRequest(frame)
		if err != nil {
			if req != nil {
				t.Fatalf("error %v with a request", err)
			}
			return
		}
		if req.Key() != h.key || req.GetVersion() != h.version {
			t.Fatalf("header %+v, request %d v%d", h, req.Key(), req.GetVersion())
		}
		_ = req.AppendTo(nil)
	})
}
