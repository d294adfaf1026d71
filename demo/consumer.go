package demo

import (
	"fmt"
	"time"

	"github.com/copyscope/copyscope/internal/kfetch"
)

// dialConsumer connects a consumer to the broker listener at addr. It
// speaks Fetch v11 (the newest non-flexible version) for partition 0 of the
// topic with the setting's max_bytes and filter (filter.go), streams each response through a buffer of
// kfetch.DefaultBufSize (as bench's consumer does, so their figures agree
// at the same chunk and fetch size), and waits at most 100 ms for records;
// with RcvLowat the reads use that SO_RCVLOWAT except for each response's
// tail.
func (d *Demo) dialConsumer(addr, path string, st setting) (*kfetch.Client, error) {
	id, keep, err := d.consumerFilter(path, st.filter)
	if err != nil {
		return nil, err
	}
	c, err := kfetch.Dial(addr, d.cfg.RcvLowat, kfetch.Config{
		Topic: d.cfg.Topic, Partition: 0, Version: 11, ClientID: id, Keep: keep,
		MaxBytes: int32(st.fetch), MaxWait: 100 * time.Millisecond, BufSize: kfetch.DefaultBufSize,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	if path == "tls" {
		if err := c.StartTLS(d.brk.tls.ClientConfig()); err != nil {
			c.Close()
			return nil, fmt.Errorf("consumer: %w", err)
		}
	}
	return c, nil
}
