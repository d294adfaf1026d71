package kafka

import (
	"os"
	"testing"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDataDirRemovedRefusesProduce: after rm -rf of the data directory
// under a running broker with fsync always, the next acks=-1 produce gets
// KAFKA_STORAGE_ERROR (no acknowledgement into deleted files).
func TestDataDirRemovedRefusesProduce(t *testing.T) {
	dir := t.TempDir() + "/data"
	lc := log.DefaultConfig()
	lc.Fsync = log.FsyncAlways
	store, err := log.Open(dir, lc)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(store, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(t.Context()); store.Close() }()
	if err := store.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, srv.Addrs()[0].Addr)
	produce := func() int16 {
		req := kmsg.NewPtrProduceRequest()
		req.SetVersion(9)
		req.Acks, req.TimeoutMillis = -1, 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: makeBatch([]byte("v"))}}}}
		return rawRequest(t, c, req).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := produce(); code != 0 {
		t.Fatalf("produce before the removal: error %d", code)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if code := produce(); code != kerr.KafkaStorageError.Code {
			t.Fatalf("produce %d after rm -rf: error %d, want KAFKA_STORAGE_ERROR (%d)", i, code, kerr.KafkaStorageError.Code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
