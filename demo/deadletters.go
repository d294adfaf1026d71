package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/copyscope/copyscope/broker/kafka"
	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/internal/kproduce"
	"github.com/copyscope/copyscope/tui"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// Dead letters in the demo (key d, tui.ActionDeadLetters): while on, each
// path gets a producer on its own thread that every deadLetterTick sends
// deadLetterK dead letters of random records to the topic's dead-letter
// topic over that path's listener both ways: by reference (the broker
// copies the original from its log, through the path) and re-produced
// whole (the client-side way). The broker's work for them runs on that
// path's data threads, so it shows in the path's column; the new row
// counts the dead letters and the bytes each way put on the socket.
const (
	deadLetterTick = 200 * time.Millisecond
	deadLetterK    = 8
)

// dlqCounts are one path's dead letters sent, by way.
type dlqCounts struct {
	refs, copies, refBytes, copyBytes atomic.Int64
}

// dlqState is the per-path counts and the previous sample's values.
type dlqState struct {
	counts map[string]*dlqCounts
	prev   map[string][4]int64
}

func newDLQState(paths []string) *dlqState {
	s := &dlqState{counts: map[string]*dlqCounts{}, prev: map[string][4]int64{}}
	for _, p := range paths {
		s.counts[p] = &dlqCounts{}
	}
	return s
}

// deadLetters is one path's dead-letter producer; it runs until the demo
// stops, sending only while the setting says so.
func (d *Demo) deadLetters(path string) {
	defer d.wg.Done()
	runtime.LockOSThread() // never unlocked: the thread dies with it
	var fd = -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	var p *kproduce.Producer
	rng := rand.New(rand.NewPCG(uint64(len(path)), 7))
	value := make([]byte, d.cfg.RecordSize)
	tk := time.NewTicker(deadLetterTick)
	defer tk.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-tk.C:
		}
		if !d.ctl.current().deadLetters {
			continue
		}
		if p == nil {
			var err error
			if fd, err = dialProducer(d.brk.addr(path)); err != nil {
				d.noteErr(fmt.Errorf("dead letters over %s: %w", path, err))
				continue
			}
			p = kproduce.New(fd)
		}
		if err := d.sendDeadLetters(p, path, rng, value); err != nil {
			d.noteErr(fmt.Errorf("dead letters over %s: %w", path, err))
			unix.Close(fd)
			fd, p = -1, nil
		}
	}
}

// sendDeadLetters sends deadLetterK dead letters each way.
func (d *Demo) sendDeadLetters(p *kproduce.Producer, path string, rng *rand.Rand, value []byte) error {
	part, err := d.brk.store.Partition(d.cfg.Topic, 0)
	if err != nil {
		return err
	}
	start, end := part.StartOffset(), part.EndOffset()
	if end <= start {
		return nil
	}
	dlq := d.cfg.Topic + kafka.DeadLetterSuffix
	refs := make([]kmsg.Record, deadLetterK)
	for i := range refs {
		off := start + rng.Int64N(end-start)
		refs[i].Headers = []kmsg.Header{{Key: kafka.RefHeader, Value: fmt.Appendf(nil, "%s/0/%d", d.cfg.Topic, off)}}
	}
	c := d.dlq.counts[path]
	before := p.BytesSent
	if err := p.Send(dlq, refs); err != nil {
		return err
	}
	c.refs.Add(deadLetterK)
	c.refBytes.Add(int64(p.BytesSent - before))
	copies := make([]kmsg.Record, deadLetterK)
	for i := range copies {
		copies[i].Value = value
	}
	before = p.BytesSent
	if err := p.Send(dlq, copies); err != nil {
		return err
	}
	c.copies.Add(deadLetterK)
	c.copyBytes.Add(int64(p.BytesSent - before))
	return nil
}

// dialProducer connects a blocking TCP socket to addr (IPv4 host:port).
func dialProducer(addr string) (int, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return -1, fmt.Errorf("resolve %s: %w", addr, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return fd, nil
}

// ensureDeadLetterTopic creates the dead-letter topic once.
func (d *Demo) ensureDeadLetterTopic() error {
	err := d.brk.store.CreateTopic(d.cfg.Topic+kafka.DeadLetterSuffix, 1)
	if err != nil && !errors.Is(err, log.ErrTopicExists) {
		return fmt.Errorf("create dead-letter topic: %w", err)
	}
	return nil
}

// addDeadLetterRates puts each path's dead letters of the interval into s.
func (d *Demo) addDeadLetterRates(s *tui.Sample, secs float64) {
	if secs <= 0 || !d.ctl.current().deadLetters {
		return
	}
	s.DeadLetters = map[string]tui.DeadLetterRates{}
	for path, c := range d.dlq.counts {
		cur := [4]int64{c.refs.Load(), c.copies.Load(), c.refBytes.Load(), c.copyBytes.Load()}
		prev := d.dlq.prev[path]
		d.dlq.prev[path] = cur
		s.DeadLetters[path] = tui.DeadLetterRates{
			RefsPerS: float64(cur[0]-prev[0]) / secs, CopiesPerS: float64(cur[1]-prev[1]) / secs,
			RefBytesPerS: float64(cur[2]-prev[2]) / secs, CopyBytesPerS: float64(cur[3]-prev[3]) / secs,
		}
	}
}

func (d *Demo) noteErr(err error) {
	d.grp.mu.Lock()
	d.grp.noteErr(err)
	d.grp.mu.Unlock()
}
