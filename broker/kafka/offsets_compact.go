package kafka

import (
	"time"
)

// Compaction of the offsets log, in place of Kafka's log cleaner: when
// the log holds far more records than there are live offsets, every
// group's live offsets are appended again (each group under its lock, so
// no newer commit of it can land before its copy) and the whole segments
// before the copy are deleted. Replaying what is left gives the same
// state: a record before the copy that the copy does not repeat was
// overwritten or deleted by a later record, which is kept too.

// defaultCompactMin is the log size, in records (~100 bytes each), below
// which compaction never runs.
const defaultCompactMin = 100_000

// compactCheckEvery bounds how often the sweeper counts live offsets.
const compactCheckEvery = 10 * time.Second

// maybeCompact starts a compaction when the log holds more than twice the
// live offsets plus compactMin records; one runs at a time, off the
// sweeper's goroutine.
func (c *coordinator) maybeCompact(now time.Time) {
	if c.records.Load() < c.compactMin || now.Sub(c.lastCompact) < c.compactEvery || c.compacting.Load() {
		return
	}
	c.lastCompact = now
	live := 0
	for _, g := range c.snapshot() {
		g.mu.Lock()
		live += len(g.offsets)
		g.mu.Unlock()
	}
	if c.records.Load() < 2*int64(live)+c.compactMin {
		return
	}
	c.compacting.Store(true)
	c.wg.Add(1) // the sweeper's own count keeps the group from reaching zero meanwhile
	go func() { defer c.wg.Done(); c.compact() }()
}

// compact copies the live offsets to the end of the log and deletes the
// segments before the copy.
func (c *coordinator) compact() {
	defer c.compacting.Store(false)
	p, err := c.offsetsPartition()
	if err != nil {
		c.logf("compact %s: %v", offsetsTopic, err)
		return
	}
	start, before := time.Now(), c.records.Load()
	from := p.EndOffset()
	kept := 0
	for _, g := range c.snapshot() {
		select {
		case <-c.closing:
			return // nothing deleted: the copy so far is harmless
		default:
		}
		g.mu.Lock()
		var recs []offsetRecord
		for tp, cm := range g.offsets {
			recs = append(recs, offsetRecord{tp: tp, c: cm})
		}
		if g.state != groupDead && len(recs) > 0 {
			err = c.appendOffsets(g.id, recs)
			kept += len(recs)
		}
		g.mu.Unlock()
		if err != nil {
			c.logf("compact %s: %v (nothing deleted; retried later)", offsetsTopic, err)
			return
		}
	}
	n, err := p.DeleteBefore(from)
	if err != nil {
		c.logf("compact %s: %v", offsetsTopic, err)
	}
	c.records.Add(-before) // what is left: the copy and commits since
	c.logf("compacted %s: %d records held %d live offsets; copied them, deleted %d segments in %v",
		offsetsTopic, before, kept, n, time.Since(start).Round(time.Millisecond))
}
