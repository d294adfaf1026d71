package demo

import (
	"fmt"
	"time"

	"github.com/copyscope/copyscope/internal/kfetch"
)

// dialConsumer connects a consumer to the broker listener at addr. It
// speaks Fetch v11 (the newest non-flexible version) for partition 0 of the
// topic, reads each whole response into a buffer sized to it, and waits at
// most 100 ms for records; with RcvLowat the reads use that SO_RCVLOWAT
// except for each response's tail.
func (d *Demo) dialConsumer(addr string) (*kfetch.Client, error) {
	c, err := kfetch.Dial(addr, d.cfg.RcvLowat, kfetch.Config{
		Topic: d.cfg.Topic, Partition: 0, Version: 11, ClientID: "copyscope-demo",
		MaxBytes: int32(d.cfg.FetchBytes), MaxWait: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	return c, nil
}
