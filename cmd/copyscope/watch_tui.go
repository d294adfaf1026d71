package main

import (
	"context"
	"io"
	"os"

	"github.com/mattn/go-isatty"

	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/tui"
)

// watchUI is watch's terminal UI: the sampler hands it each interval's
// records; the UI runs until the user quits (which cancels the sampler's
// context) or the records stop.
//
// The seam in runWatch, on a terminal without --json:
//
//	ui := startWatchUI(ctx, cancel)   // ctx, cancel: the sampler's context
//	... in the sampler's emit: ui.send(ctx, recs); (no line printing)
//	... after sampler.Run returns: err = ui.close()
type watchUI struct {
	ch   chan tui.Sample
	done chan error
}

// isTerminal reports whether w is a terminal (the UI only runs on one).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// startWatchUI starts the UI; quitting it calls cancel.
func startWatchUI(ctx context.Context, cancel context.CancelFunc) *watchUI {
	u := &watchUI{ch: make(chan tui.Sample, 2), done: make(chan error, 1)}
	cfg := tui.Config{Title: "copyscope watch", Kernel: kernelRelease()}
	go func() {
		err := tui.Run(ctx, cfg, u.ch, nil, nil)
		cancel()
		u.done <- err
	}()
	return u
}

// send shows one interval's records; it gives up when ctx is done.
func (u *watchUI) send(ctx context.Context, recs []metrics.Record) {
	select {
	case u.ch <- tui.Sample{Records: recs}:
	case <-ctx.Done():
	}
}

// close ends the UI (if the user has not) and returns its error.
func (u *watchUI) close() error {
	close(u.ch)
	return <-u.done
}
