// Package demo runs copyscope's live demonstration: the embedded broker on
// loopback with one listener per transfer path, a producer, one paced
// consumer per path on its own OS thread, and the probes on every data and
// consumer thread, turned into one tui.Sample per interval.
package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/internal/kfetch"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
	"github.com/copyscope/copyscope/tui"
)

// Config says what the demo runs.
type Config struct {
	Paths       []string      // transfer paths, one consumer each (default all)
	Chunk       int           // bytes per data-path syscall (0: the path's default)
	Rate        float64       // fair mode: bytes per second per path
	RcvLowat    int           // consumers' SO_RCVLOWAT (0: kernel default)
	Mode        string        // ModeFair or ModeRace
	RaceSlot    time.Duration // race mode: how long each path runs alone
	DataDir     string        // log directory; "" means a temporary one, removed on Close
	Probe       string        // auto, ebpf or proc
	Interval    time.Duration // sampling interval
	Topic       string        // topic produced and consumed
	Preload     int64         // bytes produced before the consumers start
	ProduceRate float64       // bytes per second produced after the preload
	RecordSize  int           // bytes per produced record value
	FetchBytes  int           // max bytes per Fetch
	// OnSnapshot, when set, is called with every interval's cumulative
	// counters per subject (for exporters such as --prometheus).
	OnSnapshot func(metrics.Snapshot)
	// Filter is the share of records the consumers ask the broker for
	// (tagmix tags; 1 or 0: no filter); key t changes it.
	Filter float64
}

// DefaultConfig is the demo as `make demo` runs it.
func DefaultConfig() Config {
	paths, _ := transfer.Usable(transfer.Names()) // validate names what is left out, if asked for
	return Config{
		Paths:       paths,
		Chunk:       64 << 10,
		Rate:        200e6,
		Mode:        ModeFair,
		RaceSlot:    5 * time.Second,
		Probe:       "auto",
		Interval:    time.Second,
		Topic:       "copyscope-demo",
		Preload:     64 << 20,
		ProduceRate: 4e6,
		RecordSize:  16 << 10,
		FetchBytes:  1 << 20,
	}
}

func (c Config) validate() error {
	if len(c.Paths) == 0 {
		return errors.New("demo: no transfer path chosen (use --paths with some of " + fmt.Sprint(transfer.Names()) + ")")
	}
	for _, p := range c.Paths {
		if p == "tls" { // a TLS listener; consumers decrypt
			continue
		}
		if !slices.Contains(transfer.Names(), p) {
			return fmt.Errorf("demo: unknown transfer path %q (valid: %v, tls)", p, transfer.Names())
		}
		if err := transfer.Supported(p); err != nil {
			return fmt.Errorf("demo: %w (leave it out of --paths)", err)
		}
	}
	if c.Mode != ModeFair && c.Mode != ModeRace {
		return fmt.Errorf("demo: unknown mode %q (use fair or race)", c.Mode)
	}
	if c.Rate <= 0 || c.Interval <= 0 || c.RaceSlot <= 0 || c.FetchBytes <= 0 || c.RecordSize <= 0 {
		return fmt.Errorf("demo: rate, interval, race slot, fetch size and record size must be positive (rate %v, interval %v, slot %v, fetch %d, record %d)",
			c.Rate, c.Interval, c.RaceSlot, c.FetchBytes, c.RecordSize)
	}
	return nil
}

// Demo is a running demonstration. It implements tui.Controller.
type Demo struct {
	cfg     Config
	ctx     context.Context
	cancel  context.CancelFunc
	dir     string
	tempDir bool
	reg     *transfer.Registry
	brk     *brokerSide
	probe   probes.Probe
	grp     *grouper
	ctl     *control
	samples chan tui.Sample
	notes   []string

	filt *filterState // filter.go
	dlq  *dlqState    // deadletters.go

	produced atomic.Int64 // record bytes produced
	leo      atomic.Int64 // log end offset seen by the producer

	fetchMu  sync.Mutex
	fetchers map[*kfetch.Client]struct{} // open consumer connections, cut on Close

	wg      sync.WaitGroup // consumers, producer, sampler, event pump
	closeMu sync.Mutex
	closed  bool
}

// Start brings the demo up: broker, probe, producer (preloading the log),
// consumers and sampler. Samples then arrive on Samples() until ctx is done
// or Close is called; Close must always be called.
func Start(ctx context.Context, cfg Config) (*Demo, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Demo{cfg: cfg, reg: transfer.NewRegistry(), samples: make(chan tui.Sample, 4), fetchers: map[*kfetch.Client]struct{}{}, filt: newFilterState(cfg.Paths), dlq: newDLQState(cfg.Paths)}
	d.ctx, d.cancel = context.WithCancel(ctx)
	started := false
	defer func() {
		if !started { // undo whatever came up
			d.Close()
		}
	}()
	if err := d.makeDataDir(); err != nil {
		return nil, err
	}
	// Loading the BPF programs (the verifier) overlaps the broker's start
	// and the preload; connection events wait in the subscription.
	type opened struct {
		p     probes.Probe
		notes []string
		err   error
	}
	probeCh := make(chan opened, 1)
	go func() {
		p, notes, err := openProbe(cfg.Probe)
		probeCh <- opened{p, notes, err}
	}()
	events, unsub := d.reg.Subscribe()
	pumping := false
	defer func() {
		if !pumping {
			unsub()
		}
	}()
	var err error
	d.brk, err = startBroker(d.dir, cfg, d.reg)
	var produce func()
	if err == nil {
		produce, err = d.preload()
	}
	op := <-probeCh
	d.probe, d.notes = op.p, op.notes
	if op.err != nil {
		if produce != nil { // let the producer close its client
			d.cancel()
			d.wg.Add(1)
			go produce()
		}
		return nil, op.err
	}
	if err != nil {
		return nil, err
	}
	d.grp = newGrouper(d.probe, cfg.Paths)
	d.ctl = newControl(cfg.Paths, cfg.Mode, cfg.Rate, cfg.Chunk, cfg.FetchBytes, cfg.RaceSlot)
	d.ctl.filter = cfg.Filter

	pumping = true
	d.wg.Add(1)
	go d.pumpEvents(events, unsub)
	d.wg.Add(1)
	go produce()
	for _, p := range cfg.Paths {
		d.wg.Add(1)
		go d.deadLetters(p)
	}
	for _, p := range cfg.Paths {
		d.wg.Add(1)
		go d.consume(p)
	}
	d.wg.Add(1)
	go d.sample()
	started = true
	return d, nil
}

// makeDataDir uses Config.DataDir, or a temporary directory removed by
// Close.
func (d *Demo) makeDataDir() error {
	d.dir = d.cfg.DataDir
	if d.dir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "copyscope-demo-")
	if err != nil {
		return fmt.Errorf("demo: create a temporary data dir: %w (set TMPDIR or use --data)", err)
	}
	d.dir, d.tempDir = dir, true
	return nil
}

// pumpEvents hands the broker's connection events to the grouper until
// the demo stops.
func (d *Demo) pumpEvents(events <-chan transfer.Event, unsub func()) {
	defer d.wg.Done()
	defer unsub()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			d.grp.connEvent(ev)
		case <-d.ctx.Done():
			return
		}
	}
}

// Samples delivers one sample per interval; it is closed when the demo
// stops.
func (d *Demo) Samples() <-chan tui.Sample { return d.samples }

// Notes explains degraded measurements (e.g. the /proc fallback and why).
func (d *Demo) Notes() []string { return d.notes }

// ProbeMode is the probe's mode: ebpf (exact) or proc (estimates).
func (d *Demo) ProbeMode() metrics.Mode { return d.probe.Mode() }

// Act applies a key press from the UI.
func (d *Demo) Act(a tui.Action) {
	now := time.Now()
	switch a.Kind {
	case tui.ActionMode:
		if a.Value == ModeFair || a.Value == ModeRace {
			d.ctl.setMode(a.Value, now)
		}
	case tui.ActionPaths:
		d.ctl.setEnabled(a.Enabled, now)
	case tui.ActionChunk:
		if err := d.brk.setChunk(a.Bytes); err != nil {
			d.grp.mu.Lock()
			d.grp.noteErr(err)
			d.grp.mu.Unlock()
			return
		}
		d.ctl.setChunk(a.Bytes)
	case tui.ActionFilter:
		d.ctl.setFilter(a.Share)
	case tui.ActionDeadLetters:
		if err := d.ensureDeadLetterTopic(); err != nil {
			d.noteErr(err)
			return
		}
		d.ctl.setDeadLetters(a.On)
	case tui.ActionFetch:
		if a.Bytes > 0 {
			d.ctl.setFetch(a.Bytes)
		}
	}
}

// consume is one path's consumer: a locked OS thread fetching the topic
// over the path's listener, paced in fair mode, wrapping to the log start
// at the end of the log.
func (d *Demo) consume(path string) {
	defer d.wg.Done()
	runtime.LockOSThread() // never unlocked: the thread dies with the consumer
	tid := unix.Gettid()
	if err := d.grp.addConsumer(tid, path); err != nil {
		d.grp.mu.Lock()
		d.grp.noteErr(err)
		d.grp.mu.Unlock()
	}
	defer d.grp.removeConsumer(tid)
	c := &consumer{d: d, path: path, paceGen: ^uint64(0)}
	defer c.drop()
	for d.ctx.Err() == nil {
		st, ok := d.ctl.wait(path)
		if !ok {
			return
		}
		if c.f != nil && st.connGen != c.connGen {
			c.drop()
		}
		if c.f == nil {
			if ok, retry := c.connect(st); !ok {
				return
			} else if retry {
				continue
			}
		}
		if c.paced(st) {
			continue
		}
		if !c.fetch() {
			return
		}
	}
}

// consumer is the state of one path's consumer thread.
type consumer struct {
	d         *Demo
	path      string
	f         *kfetch.Client // nil while not connected
	connGen   uint64         // the settings generation f was made for
	offset    int64
	failures  int
	paceGen   uint64 // fair-mode pacing: its settings generation,
	paceStart time.Time
	paceBytes float64 // and the bytes fetched since paceStart
}

// connect dials the path's listener for settings st. ok false: stop the
// consumer; retry: the dial failed and was backed off, try again.
func (c *consumer) connect(st setting) (ok, retry bool) {
	d := c.d
	c.connGen = st.connGen
	f, err := d.dialConsumer(d.brk.addr(c.path), c.path, st)
	if err != nil {
		return d.backoff(&c.failures, err), true
	}
	c.f = f
	d.grp.addPeer(f.Local(), c.path)
	d.fetchMu.Lock()
	d.fetchers[f] = struct{}{}
	stopping := d.ctx.Err() != nil
	d.fetchMu.Unlock()
	return !stopping, false
}

// paced reports whether fair mode wants the consumer to wait (it has then
// slept a little) before the next fetch.
func (c *consumer) paced(st setting) bool {
	if st.mode != ModeFair {
		return false
	}
	if st.gen != c.paceGen {
		c.paceGen, c.paceStart, c.paceBytes = st.gen, time.Now(), 0
	}
	due := c.paceStart.Add(time.Duration(c.paceBytes / st.rate * 1e9))
	if wait := time.Until(due); wait > 0 {
		time.Sleep(min(wait, 100*time.Millisecond))
		return true
	}
	return false
}

// fetch makes one Fetch and moves the offset on, wrapping to the log start
// at its end; false when the consumer gives up after failures.
func (c *consumer) fetch() bool {
	res, err := c.f.Fetch(c.offset)
	if err != nil {
		c.drop()
		return c.d.backoff(&c.failures, fmt.Errorf("consumer: %w", err))
	}
	c.failures = 0
	c.paceBytes += float64(res.Bytes)
	c.d.grp.received[c.path].Add(res.Bytes)
	switch {
	case res.ErrCode != 0 || res.Next >= res.HighWatermark:
		// At the end of the log (or out of range): read it again from
		// the start at once rather than long-polling for new records.
		c.offset = max(res.LogStart, 0)
	default:
		c.offset = res.Next
	}
	return true
}

// drop closes the connection, if any.
func (c *consumer) drop() {
	if c.f == nil {
		return
	}
	c.d.grp.dropPeer(c.f.Local())
	c.d.fetchMu.Lock()
	delete(c.d.fetchers, c.f)
	c.d.fetchMu.Unlock()
	c.f.Close()
	c.f = nil
}

// backoff waits a little after a failed fetch; it gives up (false) when
// the demo is stopping.
func (d *Demo) backoff(failures *int, err error) bool {
	*failures++
	if d.ctx.Err() != nil {
		return false
	}
	if *failures == 3 {
		d.grp.mu.Lock()
		d.grp.noteErr(err)
		d.grp.mu.Unlock()
	}
	select {
	case <-d.ctx.Done():
		return false
	case <-time.After(time.Duration(min(*failures, 10)) * 50 * time.Millisecond):
		return true
	}
}

// sample turns probe readings into one tui.Sample per interval.
func (d *Demo) sample() {
	defer d.wg.Done()
	defer close(d.samples)
	prev, err := d.grp.snapshot()
	if err != nil {
		d.notes = append(d.notes, err.Error())
		return
	}
	prevProduced := d.produced.Load()
	// The first sample comes after at most half a second, so numbers show
	// soon after start; rates always use the measured interval.
	tk := time.NewTicker(min(d.cfg.Interval, 500*time.Millisecond))
	defer tk.Stop()
	first := true
	raceTk := time.NewTicker(100 * time.Millisecond)
	defer raceTk.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case now := <-raceTk.C:
			d.ctl.tick(now)
			continue
		case <-tk.C:
		}
		if first {
			first = false
			tk.Reset(d.cfg.Interval)
		}
		cur, err := d.grp.snapshot()
		if err != nil {
			d.grp.mu.Lock()
			d.grp.noteErr(err)
			d.grp.mu.Unlock()
			continue
		}
		if d.cfg.OnSnapshot != nil {
			d.cfg.OnSnapshot(cur)
		}
		produced := d.produced.Load()
		secs := cur.Time.Sub(prev.Time).Seconds()
		s := d.buildSample(metrics.Records(prev, cur))
		d.addFilterFields(&s, d.ctl.current().filter)
		d.addDeadLetterRates(&s, secs)
		bs := d.brk.stats()
		if secs > 0 {
			bs.ProduceBytesPerS = float64(produced-prevProduced) / secs
		}
		s.Broker = &bs
		s.Status = d.ctl.status(time.Now())
		for _, e := range d.grp.takeErrs() {
			s.Status += " · " + e.Error()
		}
		prev, prevProduced = cur, produced
		select {
		case d.samples <- s:
		case <-d.ctx.Done():
			return
		}
	}
}

// buildSample splits records into path columns (in --paths order) and
// their consumers.
func (d *Demo) buildSample(recs []metrics.Record) tui.Sample {
	s := tui.Sample{Consumers: map[string]metrics.Record{}}
	order := map[string]int{}
	for i, p := range d.cfg.Paths {
		order[p] = i
	}
	for _, r := range recs {
		if r.Kind == metrics.KindThread {
			for _, p := range d.cfg.Paths {
				if r.Subject == ConsumerSubject(p) {
					s.Consumers[p] = r
				}
			}
			continue
		}
		s.Records = append(s.Records, r)
	}
	sort.SliceStable(s.Records, func(i, j int) bool { return order[s.Records[i].Subject] < order[s.Records[j].Subject] })
	return s
}

// Close stops everything the demo started, in order, and removes a
// temporary data directory. It is safe to call more than once.
func (d *Demo) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.cancel()
	if d.ctl != nil {
		d.ctl.stop()
	}
	// Detaching the probe's programs is the slow part (each link waits for
	// the kernel); it runs while the rest shuts down. Its methods are safe
	// for concurrent use, and errors from the sampler racing it are moot.
	probeErr := make(chan error, 1)
	if d.probe != nil {
		go func() { probeErr <- d.probe.Close() }()
	} else {
		probeErr <- nil
	}
	// Cut the consumers' sockets so none stays blocked in a read.
	d.fetchMu.Lock()
	for f := range d.fetchers {
		f.Shutdown()
	}
	d.fetchMu.Unlock()
	var errs []error
	if d.brk != nil {
		errs = append(errs, d.brk.close())
	}
	d.wg.Wait()
	if d.brk != nil {
		errs = append(errs, d.brk.closeStore())
	}
	if d.tempDir {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, fmt.Errorf("demo: remove temporary data dir %s: %w", d.dir, err))
		}
	}
	errs = append(errs, <-probeErr)
	return errors.Join(errs...)
}
