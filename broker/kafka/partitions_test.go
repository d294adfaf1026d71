package kafka

import (
	"os"
	"strings"
	"testing"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// createTopicsRaw asks for one topic of n partitions and returns its
// error code and message.
func createTopicsRaw(t *testing.T, addr, topic string, n int32) (int16, string) {
	t.Helper()
	c := dialRaw(t, addr)
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(4)
	req.TimeoutMillis = 60_000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, n, 1
	req.Topics = append(req.Topics, rt)
	r := rawRequest(t, c, req).(*kmsg.CreateTopicsResponse).Topics[0]
	msg := ""
	if r.ErrorMessage != nil {
		msg = *r.ErrorMessage
	}
	return r.ErrorCode, msg
}

// TestCreateTopicsBeyondCap: CreateTopics of 10,000 partitions on the
// default limits is refused whole (INVALID_PARTITIONS, a message naming
// the limit, nothing on disk), and a restarted broker serves new
// connections.
func TestCreateTopicsBeyondCap(t *testing.T) {
	const limit = 500 // the default, 4096, takes 40 s of fsyncs here
	dir := t.TempDir()
	var logs logBuffer
	b := startBrokerWith(t, dir, func(c *log.Config) { c.MaxPartitions = limit }, func(c *Config) { c.Logf = logs.logf })
	code, msg := createTopicsRaw(t, b.addr, "huge", 10_000)
	if logs.count("create topic huge", "--max-partitions") != 1 {
		t.Errorf("no log line says why the creation was refused: %q", logs.lines)
	}
	if code != kerr.InvalidPartitions.Code || !strings.Contains(msg, "--max-partitions") {
		t.Fatalf("CreateTopics of 10,000 partitions: error %d %q, want INVALID_PARTITIONS naming --max-partitions", code, msg)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "huge-") {
			t.Fatalf("refused creation left %s on disk", e.Name())
		}
	}
	if code, _ := createTopicsRaw(t, b.addr, "fits", limit); code != 0 {
		t.Fatalf("CreateTopics of %d partitions (the limit): error %d", limit, code)
	}
	if code, _ := createTopicsRaw(t, b.addr, "one-more", 1); code != kerr.InvalidPartitions.Code {
		t.Fatalf("one partition beyond the limit: error %d, want INVALID_PARTITIONS", code)
	}
	b.stop()
	b = startBrokerLog(t, dir, func(c *log.Config) { c.MaxPartitions = limit })
	if _, err := probeLatency(b.addr); err != nil {
		t.Fatalf("restarted broker with %d partitions does not serve: %v", limit, err)
	}
	if got := b.store.Topics()["fits"]; got != limit {
		t.Fatalf("after restart topic fits has %d partitions, want %d", got, limit)
	}
}
