package kfetch

import (
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzResponse feeds arbitrary bytes to Response as a broker's reply: a
// hostile or broken broker must get an error, never a panic or a hang, and
// a response that parses never claims more record bytes than it held.
func FuzzResponse(f *testing.F) {
	for _, v := range []int16{4, 11} {
		f.Add(v, frame(v, 0, 0, part{hw: 10, logStart: 0, records: testBatch(0, 3, 40)}))
		f.Add(v, frame(v, 0, 0, part{hw: 10, records: testBatch(5, 2, 10)[:30]}))
		f.Add(v, frame(v, 0, 1))
	}
	f.Add(int16(4), []byte{0, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, version int16, resp []byte) {
		v := int16(4)
		if version%2 != 0 {
			v = 11
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Skipf("socketpair: %v", err)
		}
		c, err := New(fds[0], Config{Topic: "t", Version: v, MaxBytes: 1 << 20, BufSize: 64 << 10, Verify: true})
		if err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for b := resp; len(b) > 0; {
				n, err := unix.Write(fds[1], b)
				if err != nil {
					break
				}
				b = b[n:]
			}
			unix.Close(fds[1]) // EOF after the bytes
		}()
		res, err := c.Response(0)
		<-done
		if err == nil && res.RecordBytes > int64(len(resp)) {
			t.Errorf("response of %d bytes reports %d record bytes", len(resp), res.RecordBytes)
		}
	})
}
