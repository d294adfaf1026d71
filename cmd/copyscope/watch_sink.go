package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"

	"github.com/copyscope/copyscope/metrics"
)

// watchSink is where watch's records go: the live TUI, JSON lines or
// table rows. send takes one interval's records; totals the summary over
// the whole run, after close has given the terminal back.
type watchSink interface {
	send(ctx context.Context, recs []metrics.Record) error
	close() error
	totals(recs []metrics.Record) error
}

// newWatchSink picks the sink: the TUI on a terminal (unless --json),
// else JSON lines or table rows on out. Quitting the TUI calls cancel.
func newWatchSink(ctx context.Context, cancel context.CancelFunc, out io.Writer, asJSON bool) watchSink {
	switch {
	case asJSON:
		return jsonSink{enc: json.NewEncoder(out)}
	case isTerminal(out):
		return &tuiSink{ui: startWatchUI(ctx, cancel), out: out}
	}
	return &tableSink{out: out}
}

// jsonSink writes one JSON line per subject per interval, and per subject
// for the whole run.
type jsonSink struct{ enc *json.Encoder }

func (s jsonSink) send(_ context.Context, recs []metrics.Record) error {
	for _, r := range recs {
		if err := s.enc.Encode(newWatchRecord(r)); err != nil {
			return fmt.Errorf("write JSON record: %w", err)
		}
	}
	return nil
}

func (s jsonSink) close() error { return nil }

func (s jsonSink) totals(recs []metrics.Record) error {
	for _, r := range recs {
		if err := s.enc.Encode(newWatchRecord(r)); err != nil {
			return fmt.Errorf("write summary record: %w", err)
		}
	}
	return nil
}

// tableSink writes one table row per subject per interval, under a header
// printed once, then the run's summary rows under their own header.
type tableSink struct {
	out    io.Writer
	header bool // printed
}

func (s *tableSink) send(_ context.Context, recs []metrics.Record) error {
	for _, r := range recs {
		if !s.header {
			fmt.Fprintln(s.out, watchHeader("TIME"))
			s.header = true
		}
		if _, err := fmt.Fprintln(s.out, watchLine(r, metrics.Verdict(r))); err != nil {
			return fmt.Errorf("write table row: %w", err)
		}
	}
	return nil
}

func (s *tableSink) close() error { return nil }

func (s *tableSink) totals(recs []metrics.Record) error {
	for i, r := range recs {
		if i == 0 {
			if _, err := fmt.Fprintln(s.out, watchHeader("RUN")); err != nil {
				return fmt.Errorf("write summary record: %w", err)
			}
		}
		if _, err := fmt.Fprintln(s.out, watchLine(r, metrics.Verdict(r))); err != nil {
			return fmt.Errorf("write summary record: %w", err)
		}
	}
	return nil
}

// tuiSink shows the intervals in the live TUI and, once it has ended,
// prints the run's summary as table rows.
type tuiSink struct {
	ui  *watchUI
	out io.Writer
}

func (s *tuiSink) send(ctx context.Context, recs []metrics.Record) error {
	s.ui.send(ctx, recs)
	return nil
}

func (s *tuiSink) close() error { return s.ui.close() }

func (s *tuiSink) totals(recs []metrics.Record) error {
	return (&tableSink{out: s.out}).totals(recs)
}

// watchLog is watch's messages on stderr. While the TUI owns the terminal
// they are held, and printed once it has given the terminal back.
type watchLog struct {
	stderr io.Writer
	hold   bool
	held   []string
	noted  map[string]bool
}

func (l *watchLog) say(format string, a ...any) {
	if l.hold {
		l.held = append(l.held, fmt.Sprintf(format, a...))
		return
	}
	fmt.Fprintf(l.stderr, format, a...)
}

// notes says each probe note once: one whose counts grow (events skipped
// so far) is the same note.
func (l *watchLog) notes(ns []string) {
	if l.noted == nil {
		l.noted = map[string]bool{}
	}
	for _, n := range ns {
		if key := noteDigits.ReplaceAllString(n, "#"); !l.noted[key] {
			l.noted[key] = true
			l.say("copyscope: note: %s\n", n)
		}
	}
}

var noteDigits = regexp.MustCompile(`[0-9]+`)

// release prints what was held and stops holding.
func (l *watchLog) release() {
	l.hold = false
	for _, m := range l.held {
		fmt.Fprint(l.stderr, m)
	}
	l.held = nil
}
