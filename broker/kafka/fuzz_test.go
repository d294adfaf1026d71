package kafka

import (
	"testing"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// FuzzHandle feeds arbitrary request frames to a connection's handler over
// a real store and a socket pair: whatever the input, the broker must not
// panic (it answers or reports an error that closes the connection).
func FuzzHandle(f *testing.F) {
	store, err := log.Open(f.TempDir(), log.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	if err := store.CreateTopic("t", 2); err != nil {
		f.Fatal(err)
	}
	p, _ := store.Partition("t", 0)
	if _, err := p.Append(makeBatch([]byte("x"), []byte("y"))); err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(store, DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	close(srv.closing) // long polls and group waits return at once
	srv.groups.load()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	go func() { // discard every response
		buf := make([]byte, 1<<16)
		for {
			if n, err := unix.Read(fds[1], buf); n <= 0 || err != nil {
				return
			}
		}
	}()
	path, err := transfer.New("sendfile", transfer.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { path.Close() })
	c := &conn{srv: srv, fd: fds[0], peer: "fuzz", local: "127.0.0.1:9092", path: path, pathName: "sendfile"}

	seed := func(req kmsg.Request) {
		b := kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
		f.Add(b[4:])
	}
	for _, r := range servedAPIs() {
		req := kmsg.RequestForKey(r.key)
		req.SetVersion(r.max)
		seed(req)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.Topics = []kmsg.FetchRequestTopic{{Topic: "t", Partitions: []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 100}}}}
	seed(fetch)
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = 1
	produce.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 1, Records: makeBatch([]byte("z"))}}}}
	seed(produce)
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.SetVersion(6)
	lo.Topics = []kmsg.ListOffsetsRequestTopic{{Topic: "t", Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0, Timestamp: 5}}}}
	seed(lo)

	for _, req := range groupSeeds() {
		seed(req)
	}

	f.Fuzz(func(t *testing.T, frame []byte) {
		_ = c.handle(frame) // an error closes the connection in serve; a panic fails here
		c.fetch.release()
	})
}
