package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiRange is the inclusive range of versions the broker serves for one API.
type apiRange struct {
	key      int16
	min, max int16
}

// servedAPIs lists what ApiVersions advertises. The ranges cover
// librdkafka 2.x (kcat), franz-go and the Java client; upper bounds stop
// before versions that need topic ids (Fetch 13, Produce 13) or
// transactions v2 (Produce 12, InitProducerId 5).
func servedAPIs() []apiRange {
	return []apiRange{
		{0, 3, 11}, // Produce: v3+ carries v2 record batches
		{1, 4, 12}, // Fetch: v4+ returns record batches; v12 is flexible
		{2, 1, 6},  // ListOffsets
		{3, 1, 12}, // Metadata
		{18, 0, 3}, // ApiVersions
		{19, 2, 7}, // CreateTopics
		{20, 1, 6}, // DeleteTopics
		{22, 0, 4}, // InitProducerId
		// The group coordinator (groups.go and one file per API).
		{8, 0, 8},  // OffsetCommit; v9+ is KIP-848's
		{9, 0, 8},  // OffsetFetch; v8 is multi-group
		{10, 0, 4}, // FindCoordinator; v4 is batched
		{11, 0, 9}, // JoinGroup
		{12, 0, 4}, // Heartbeat
		{13, 0, 5}, // LeaveGroup
		{14, 0, 5}, // SyncGroup
		{15, 0, 5}, // DescribeGroups
		{16, 0, 5}, // ListGroups
		{42, 0, 2}, // DeleteGroups
		{47, 0, 0}, // OffsetDelete
		// Admin (configs.go, one file per API).
		{32, 0, 4}, // DescribeConfigs
		{33, 0, 2}, // AlterConfigs
		{37, 0, 3}, // CreatePartitions
		{44, 0, 1}, // IncrementalAlterConfigs
	}
}

// supported returns the version range for key, if the broker serves it.
func supported(key int16) (apiRange, bool) {
	for _, r := range servedAPIs() {
		if r.key == key {
			return r, true
		}
	}
	return apiRange{}, false
}

// header is a decoded Kafka request header.
type header struct {
	key      int16
	version  int16
	corrID   int32
	clientID string
	flexible bool // request header v2 (and, except ApiVersions, response header v1)
}

// Decoding errors. errUnsupported means the header was readable, so the
// broker can answer with UNSUPPORTED_VERSION; the others mean the frame is
// garbage and the connection is closed.
var (
	errTruncated   = errors.New("truncated request")
	errUnsupported = errors.New("unsupported API key or version")
)

// decodeRequest parses one request frame (without its 4-byte size prefix):
// the header, then the body with kmsg. It never panics on any input. On
// errUnsupported the returned header is valid and the request is nil.
func decodeRequest(frame []byte) (header, kmsg.Request, error) {
	var h header
	if len(frame) < 8 {
		return h, nil, fmt.Errorf("%w: %d-byte frame is shorter than a request header", errTruncated, len(frame))
	}
	h.key = int16(binary.BigEndian.Uint16(frame[0:]))
	h.version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.corrID = int32(binary.BigEndian.Uint32(frame[4:]))
	rest := frame[8:]

	// Every API this broker could meet uses request header v1 or v2
	// (only ControlledShutdown v0 used v0, and it is not served).
	if len(rest) < 2 {
		return h, nil, fmt.Errorf("%w: no client id", errTruncated)
	}
	n := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if n >= 0 {
		if int(n) > len(rest) {
			return h, nil, fmt.Errorf("%w: client id of %d bytes, %d left", errTruncated, n, len(rest))
		}
		h.clientID = string(rest[:n])
		rest = rest[n:]
	} else if n != -1 {
		return h, nil, fmt.Errorf("%w: client id length %d", errTruncated, n)
	}

	req := kmsg.RequestForKey(h.key)
	if req == nil || h.version < 0 || h.version > req.MaxVersion() {
		return h, nil, fmt.Errorf("%w: key %d version %d", errUnsupported, h.key, h.version)
	}
	req.SetVersion(h.version)
	h.flexible = req.IsFlexible()
	if h.flexible {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return h, nil, fmt.Errorf("request header tags: %w", err)
		}
	}
	r, ok := supported(h.key)
	if !ok || h.version < r.min || h.version > r.max {
		return h, nil, fmt.Errorf("%w: %s v%d (served: %s)", errUnsupported, kmsg.NameForKey(h.key), h.version, servedRange(h.key))
	}
	if err := req.ReadFrom(rest); err != nil {
		return h, nil, fmt.Errorf("%w: %s v%d body: %v", errTruncated, kmsg.NameForKey(h.key), h.version, err)
	}
	return h, req, nil
}

func servedRange(key int16) string {
	if r, ok := supported(key); ok {
		return fmt.Sprintf("v%d-v%d", r.min, r.max)
	}
	return "none"
}

// skipTags skips a tagged-field section (KIP-482): an unsigned varint count,
// then for each field a varint tag, a varint size and that many bytes.
func skipTags(b []byte) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, errTruncated
	}
	b = b[n:]
	for i := uint64(0); i < count; i++ {
		if _, n = binary.Uvarint(b); n <= 0 {
			return nil, errTruncated
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errTruncated
		}
		b = b[n+int(size):]
	}
	return b, nil
}

// appendResponse appends a complete response frame: size prefix, response
// header and body. ApiVersions always answers with response header v0 (no
// tags) even when the request header was flexible, so that a client can
// parse it before it knows which versions the broker speaks.
func appendResponse(dst []byte, h header, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.corrID))
	if h.flexible && h.key != 18 {
		dst = append(dst, 0) // no tagged fields
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// apiVersionsResponse lists every served API at the given response version.
func apiVersionsResponse(version int16, errCode int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	resp.ErrorCode = errCode
	for _, r := range servedAPIs() {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = r.key, r.min, r.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp
}
