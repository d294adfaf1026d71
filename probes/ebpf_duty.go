//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Sampling the low-cost mode (EBPFOptions.Duty): even an empty program on
// a socket or page-cache tracepoint costs every send and read a program
// call (bench --overhead --floor measures it as low-floor), so the
// cheapest honest measurement is one that is not always attached. The
// byte-counting programs of bpf/lowcost.bpf.c are attached for 1/n of
// every period, at an offset drawn at random each period (a periodic
// workload cannot hide in the gaps), and add every count n times
// (the object's weight), so the totals estimate the whole period's.
// sched_switch, process following and sched_process_exit stay attached:
// context switches and CPU time stay exact.

// DefaultDutyPeriod is the sampling period when EBPFOptions.DutyPeriod is
// zero.
const DefaultDutyPeriod = time.Second

// MaxDuty is the largest EBPFOptions.Duty: at 1/100 of a 1 s period the
// 10 ms window is already close to the time attaching takes.
const MaxDuty = 100

// dutyCycle attaches and detaches a set of programs on its own goroutine.
type dutyCycle struct {
	n        int
	period   time.Duration
	window   *ebpf.Variable // lowcost's window counter, bumped per window
	counting *ebpf.Variable // lowcost's gate: 1 while a window is open

	progs []*ebpf.Program
	links []link.Link // attached now; owned by the goroutine once started

	stop, done chan struct{}

	mu       sync.Mutex
	attached time.Duration // total time attached
	started  time.Time
	err      error // the first attach failure, for Notes
}

func newDutyCycle(n int, period time.Duration) *dutyCycle {
	if period <= 0 {
		period = DefaultDutyPeriod
	}
	return &dutyCycle{n: n, period: period, stop: make(chan struct{}), done: make(chan struct{})}
}

// adopt takes an attached program: it is detached and reattached from now
// on.
func (d *dutyCycle) adopt(prog *ebpf.Program, l link.Link) {
	d.progs = append(d.progs, prog)
	d.links = append(d.links, l)
}

// start runs the cycle: the first window begins now (the programs are
// attached and the gate is open), then one window per period at a random
// offset.
func (d *dutyCycle) start() error {
	if d.window == nil || d.counting == nil {
		return errors.New("sampling: the low-cost object lacks its window and gate variables (run make generate)")
	}
	d.started = time.Now()
	go d.run()
	return nil
}

func (d *dutyCycle) run() {
	defer close(d.done)
	on := d.period / time.Duration(d.n)
	base := d.started
	since := base
	for k := 1; ; k++ {
		// A window ends when the open time of all windows so far reaches
		// k windows' worth: a timer that fires late (0.5 ms on a 10 ms
		// window is 5%, measured) shortens the next window instead of
		// biasing every count upwards.
		ok := d.sleepUntil(since.Add(time.Duration(k)*on - d.attachedTime()))
		d.detach(since)
		if !ok {
			return
		}
		offset := time.Duration(rand.Int64N(int64(d.period - on + 1)))
		if !d.sleepUntil(base.Add(time.Duration(k)*d.period + offset)) {
			return
		}
		var err error
		if since, err = d.attach(); err != nil {
			d.fail(err)
			<-d.stop
			return
		}
	}
}

func (d *dutyCycle) attachedTime() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attached
}

func (d *dutyCycle) sleepUntil(t time.Time) bool {
	return d.sleep(time.Until(t))
}

func (d *dutyCycle) sleep(t time.Duration) bool {
	if t <= 0 {
		return true
	}
	tm := time.NewTimer(t)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-d.stop:
		return false
	}
}

// attach starts a window: every program, then a new window number, then
// the gate opened. It returns when the window opened.
func (d *dutyCycle) attach() (time.Time, error) {
	for _, p := range d.progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			closeLinks(d.links)
			d.links = d.links[:0]
			return time.Time{}, fmt.Errorf("reattach %s: %w", p, err)
		}
		d.links = append(d.links, l)
	}
	var w uint64
	if err := d.window.Get(&w); err != nil {
		return time.Time{}, fmt.Errorf("read the sampling window: %w", err)
	}
	if err := d.window.Set(w + 1); err != nil {
		return time.Time{}, fmt.Errorf("set the sampling window: %w", err)
	}
	return time.Now(), d.gate(1)
}

// detach ends a window (the gate closed, then the programs detached) and
// adds its length to the attached time.
func (d *dutyCycle) detach(since time.Time) {
	err := d.gate(0)
	now := time.Now()
	if err != nil {
		d.fail(err)
	}
	closeLinks(d.links)
	d.links = d.links[:0]
	d.mu.Lock()
	d.attached += now.Sub(since)
	d.mu.Unlock()
}

func (d *dutyCycle) gate(v uint32) error {
	if err := d.counting.Set(v); err != nil {
		return fmt.Errorf("set the sampling gate: %w", err)
	}
	return nil
}

func (d *dutyCycle) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// close stops the cycle and detaches what is attached.
func (d *dutyCycle) close() {
	if d.started.IsZero() {
		closeLinks(d.links)
		return
	}
	close(d.stop)
	<-d.done
}

// note says how the counts are sampled and what share of the time the
// programs were attached so far.
func (d *dutyCycle) note() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := fmt.Sprintf("sampled (--duty %d): the byte-counting programs are attached for 1/%d of every %v at a random offset and count each byte %d times; byte figures are estimates",
		d.n, d.n, d.period, d.n)
	if el := time.Since(d.started); !d.started.IsZero() && el > 0 {
		s += fmt.Sprintf(" (attached %.1f%% of the %v so far, nominal %.1f%%)", 100*d.attached.Seconds()/el.Seconds(), el.Round(time.Second), 100/float64(d.n))
	}
	if d.err != nil {
		s += fmt.Sprintf("; sampling stopped: %v, bytes are no longer counted", d.err)
	}
	return s
}

// closeLinks detaches links concurrently: each detach waits for an RCU
// grace period in the kernel.
func closeLinks(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Close(); err != nil {
				errs[i] = fmt.Errorf("detach BPF link: %w", err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
