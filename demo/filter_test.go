package demo

import (
	"context"
	"testing"
	"time"

	"github.com/copyscope/copyscope/tui"
)

// TestDemoFilterKey turns the tag filter on at 10% (the t key's action):
// every path's records then carry useful and wasted bytes; the paths that
// filter in the broker (read, mmap) waste almost nothing, the by-reference
// ones waste about 90% (their consumers drop what they did not ask for).
// The shares are the workload's: the producer tags records evenly.
func TestDemoFilterKey(t *testing.T) {
	cfg := testConfig(t, "proc")
	cfg.Paths = []string{"read", "mmap", "sendfile"}
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	collect(t, d, 1)
	d.Act(tui.Action{Kind: tui.ActionFilter, Share: 0.1})
	ss := collect(t, d, 4)
	for _, p := range cfg.Paths {
		var useful, wasted uint64
		for _, s := range ss[1:] { // the first may straddle the change
			for _, r := range s.Records {
				if r.Subject == p && r.UsefulBytes != nil {
					useful += *r.UsefulBytes
					wasted += *r.WastedBytes
				}
			}
		}
		if useful == 0 {
			t.Errorf("%s: no useful bytes counted with the filter on", p)
			continue
		}
		share := float64(wasted) / float64(useful+wasted)
		broker := p == "read" || p == "mmap"
		if broker && share > 0.05 || !broker && (share < 0.85 || share > 0.95) {
			t.Errorf("%s: %.1f%% of the received bytes wasted at a 10%% filter (broker-filtered %v)", p, share*100, broker)
		}
		t.Logf("%-8s useful %.1f MB, wasted %.1f%%", p, float64(useful)/1e6, share*100)
	}
}

// TestDemoDeadLetters turns dead letters on: every path sends some both
// ways, and the dead-letter topic holds exactly as many records as the
// producers had acknowledged.
func TestDemoDeadLetters(t *testing.T) {
	cfg := testConfig(t, "proc")
	cfg.Paths = []string{"read", "mmap", "sendfile"}
	d, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	collect(t, d, 1)
	d.Act(tui.Action{Kind: tui.ActionDeadLetters, On: true})
	ss := collect(t, d, 3)
	d.Act(tui.Action{Kind: tui.ActionDeadLetters, On: false})
	time.Sleep(3 * deadLetterTick) // let a send in flight finish
	var acked int64
	for _, p := range cfg.Paths {
		c := d.dlq.counts[p]
		if c.refs.Load() == 0 || c.copies.Load() == 0 {
			t.Errorf("%s: %d references, %d copies sent", p, c.refs.Load(), c.copies.Load())
		}
		if c.refBytes.Load()*10 > c.copyBytes.Load() {
			t.Errorf("%s: references took %d bytes on the socket, copies %d: want far fewer", p, c.refBytes.Load(), c.copyBytes.Load())
		}
		acked += c.refs.Load() + c.copies.Load()
	}
	part, err := d.brk.store.Partition(cfg.Topic+".dlq", 0)
	if err != nil {
		t.Fatal(err)
	}
	if end := part.EndOffset(); end != acked {
		t.Errorf("dead-letter topic holds %d records, the producers had %d acknowledged", end, acked)
	}
	if ss[len(ss)-1].DeadLetters == nil {
		t.Errorf("samples carry no dead-letter rates while they are sent")
	}
}
