package demo

import (
	"fmt"
	"sync"
	"time"

	"github.com/copyscope/copyscope/tui"
)

// Modes of the demo: the TUI's, which its mode key sends.
const (
	// ModeFair paces every path to the same rate, so costs per GB compare.
	ModeFair = tui.ModeFair
	// ModeRace runs each path alone at full speed in turn.
	ModeRace = tui.ModeRace
)

// control is the demo's live settings, changed by keys and read by the
// consumers, which block on it while their path is not meant to run.
type control struct {
	mu      sync.Mutex
	cond    *sync.Cond
	paths   []string
	mode    string
	rate    float64
	chunk   int
	fetch   int     // consumers' Fetch max_bytes
	filter  float64 // share of records the consumers filter for (1: none)
	dlqOn   bool    // dead letters are being sent (deadletters.go)
	slot    time.Duration
	enabled map[string]bool
	racing  string    // race mode: the path running now
	raceEnd time.Time // race mode: when the current path's turn ends
	gen     uint64    // bumped on every change, so consumers restart pacing
	connGen uint64    // bumped when consumers must reconnect (new chunk)
	stopped bool
}

// setting is one consistent view of control for a consumer.
type setting struct {
	mode    string
	rate    float64
	gen     uint64
	connGen uint64
	fetch   int
	filter  float64

	deadLetters bool
}

func newControl(paths []string, mode string, rate float64, chunk, fetch int, slot time.Duration) *control {
	c := &control{paths: paths, mode: mode, rate: rate, chunk: chunk, fetch: fetch, slot: slot, enabled: map[string]bool{}}
	c.cond = sync.NewCond(&c.mu)
	for _, p := range paths {
		c.enabled[p] = true
	}
	if mode == ModeRace {
		c.nextRacerLocked(time.Now())
	}
	return c
}

// runnable reports whether path may fetch now.
func (c *control) runnableLocked(path string) bool {
	if !c.enabled[path] {
		return false
	}
	return c.mode != ModeRace || c.racing == path
}

// wait blocks until path may run (or the demo stops, ok false) and returns
// the settings to run with.
func (c *control) wait(path string) (setting, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.stopped && !c.runnableLocked(path) {
		c.cond.Wait()
	}
	return setting{mode: c.mode, rate: c.rate, gen: c.gen, connGen: c.connGen, fetch: c.fetch, filter: c.filter, deadLetters: c.dlqOn}, !c.stopped
}

// current returns the settings without waiting.
func (c *control) current() setting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return setting{mode: c.mode, rate: c.rate, gen: c.gen, connGen: c.connGen, fetch: c.fetch, filter: c.filter, deadLetters: c.dlqOn}
}

func (c *control) changedLocked() {
	c.gen++
	c.cond.Broadcast()
}

func (c *control) stop() {
	c.mu.Lock()
	c.stopped = true
	c.changedLocked()
	c.mu.Unlock()
}

func (c *control) setMode(mode string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mode = mode
	c.racing = ""
	if mode == ModeRace {
		c.nextRacerLocked(now)
	}
	c.changedLocked()
}

func (c *control) setEnabled(en map[string]bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.paths {
		c.enabled[p] = en[p]
	}
	if c.mode == ModeRace && !c.enabled[c.racing] {
		c.nextRacerLocked(now)
	}
	c.changedLocked()
}

func (c *control) setChunk(chunk int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chunk = chunk
	c.connGen++
	c.changedLocked()
}

// setFetch changes the consumers' Fetch max_bytes; they reconnect so the
// new size applies from their next request.
func (c *control) setFetch(fetch int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetch = fetch
	c.connGen++
	c.changedLocked()
}

// setFilter changes the share of records the consumers ask for; they
// reconnect with the new client id.
func (c *control) setFilter(share float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.filter = share
	c.connGen++
	c.changedLocked()
}

// setDeadLetters starts or stops the dead-letter producers.
func (c *control) setDeadLetters(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dlqOn = on
	c.changedLocked()
}

// nextRacerLocked hands the race to the next enabled path after the
// current one.
func (c *control) nextRacerLocked(now time.Time) {
	start := 0
	for i, p := range c.paths {
		if p == c.racing {
			start = i + 1
		}
	}
	c.racing = ""
	for k := 0; k < len(c.paths); k++ {
		p := c.paths[(start+k)%len(c.paths)]
		if c.enabled[p] {
			c.racing = p
			break
		}
	}
	c.raceEnd = now.Add(c.slot)
}

// tick advances the race when the current path's turn is over.
func (c *control) tick(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode == ModeRace && !now.Before(c.raceEnd) {
		c.nextRacerLocked(now)
		c.changedLocked()
	}
}

// status is the header's account of what runs.
func (c *control) status(now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.paths {
		if c.enabled[p] {
			n++
		}
	}
	if c.mode == ModeRace {
		if c.racing == "" {
			return "race: no path enabled"
		}
		left := c.raceEnd.Sub(now).Round(time.Second)
		return fmt.Sprintf("race: %s alone, %s left", c.racing, max(left, 0))
	}
	return fmt.Sprintf("fair: %d paths", n)
}
