package tui

import (
	"time"

	"github.com/copyscope/copyscope/metrics"
)

// Sample is one sampling interval's data for the UI: a record per subject
// and, in the demo, the consumer side of each path and the broker's stats.
// Samples arrive as messages; the UI never polls for them.
type Sample struct {
	// Records holds one record per subject (path, thread, process or comm).
	Records []metrics.Record `json:"records"`
	// Consumers holds, by subject name, the record of the client threads
	// that receive that subject's data (the demo's consumers), so their
	// wake-ups show next to the data thread's. Nil in watch.
	Consumers map[string]metrics.Record `json:"consumers,omitempty"`
	// Broker is the embedded broker's state; nil when there is none.
	Broker *BrokerStats `json:"broker,omitempty"`
	// Status is a one-line account of what the producer of samples is
	// doing (e.g. "race: sendfile alone, 3s left"); empty for none.
	Status string `json:"status,omitempty"`
	// DeadLetters, while the demo sends dead letters, are each path's
	// rates by way; nil otherwise.
	DeadLetters map[string]DeadLetterRates `json:"dead_letters,omitempty"`
}

// DeadLetterRates are one path's dead letters per second, by reference
// and re-produced, and the bytes each way put on the socket per second.
type DeadLetterRates struct {
	RefsPerS      float64 `json:"refs_per_s"`
	CopiesPerS    float64 `json:"copies_per_s"`
	RefBytesPerS  float64 `json:"ref_bytes_per_s"`
	CopyBytesPerS float64 `json:"copy_bytes_per_s"`
}

// BrokerStats is the embedded broker's state at the end of an interval.
type BrokerStats struct {
	ProduceBytesPerS float64 `json:"produce_bytes_per_s"`
	LogEndOffset     int64   `json:"log_end_offset"`
	Segments         int     `json:"segments"`
	LogBytes         int64   `json:"log_bytes"`
}

// Mode returns the probe mode of the sample's records (proc when any record
// is an estimate), or "" when there are no records.
func (s Sample) Mode() metrics.Mode {
	var m metrics.Mode
	for _, r := range s.Records {
		if r.Mode == metrics.ModeProc {
			return metrics.ModeProc
		}
		m = r.Mode
	}
	return m
}

// Time returns the end of the sample's interval (the latest record time).
func (s Sample) Time() time.Time {
	var t time.Time
	for _, r := range s.Records {
		if r.TS.After(t) {
			t = r.TS
		}
	}
	return t
}

// ActionKind names what a key asks the sample producer to change.
type ActionKind int

const (
	// ActionMode switches the demo between fair and race (Value is the new mode).
	ActionMode ActionKind = iota
	// ActionChunk changes the fetch chunk size (Bytes is the new size).
	ActionChunk
	// ActionPaths changes which paths run (Enabled is the new set).
	ActionPaths
	// ActionReset asks to reset cumulative counters.
	ActionReset
	// ActionPause pauses (Paused true) or resumes the display.
	ActionPause
	// ActionFetch changes the consumers' Fetch max_bytes (Bytes is the new size).
	ActionFetch
	// ActionFilter changes the share of records the consumers ask the
	// broker for (Share; 1 is no filter).
	ActionFilter
	// ActionDeadLetters starts (On) or stops the demo's dead letters.
	ActionDeadLetters
)

// Action is a change the user asked for with a key.
type Action struct {
	Kind    ActionKind
	Value   string          // ActionMode: ModeFair or ModeRace
	Bytes   int             // ActionChunk: new chunk size; ActionFetch: new fetch size
	Enabled map[string]bool // ActionPaths: subject name -> running
	Paused  bool            // ActionPause
	Share   float64         // ActionFilter
	On      bool            // ActionDeadLetters
}

// Controller receives the user's actions. It must not block: the UI calls
// it from its update loop.
type Controller interface {
	Act(Action)
}

// ControllerFunc adapts a function to Controller.
type ControllerFunc func(Action)

// Act calls f(a).
func (f ControllerFunc) Act(a Action) { f(a) }
