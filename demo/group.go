package demo

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/copyscope/copyscope/broker/transfer"
	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
)

// ConsumerSubject is the subject name of the consumer threads of a path.
func ConsumerSubject(path string) string { return "consumer:" + path }

// grouper attributes probed threads to subjects: the broker's data thread
// of each consumer connection to its path, each consumer thread to
// "consumer:<path>". Threads that go away are folded into the subject's
// retired counters after one last read, so cumulative counts never drop.
type grouper struct {
	mu      sync.Mutex
	probe   probes.Probe
	conns   map[int]transfer.ConnInfo // data threads being counted, by tid
	pending map[string]transfer.ConnInfo
	peers   map[string]string // consumer local address -> path
	cons    map[int]string    // consumer tid -> path
	gone    map[int]metrics.Subject
	retired map[metrics.Subject]metrics.Counters
	paths   []string
	errs    []error

	// received counts the bytes each path's consumer read off its socket;
	// it stands in for delivered bytes when the probe cannot count them
	// (proc mode).
	received map[string]*atomic.Int64
}

func newGrouper(p probes.Probe, paths []string) *grouper {
	g := &grouper{
		probe:   p,
		conns:   map[int]transfer.ConnInfo{},
		pending: map[string]transfer.ConnInfo{},
		peers:   map[string]string{},
		cons:    map[int]string{},
		gone:    map[int]metrics.Subject{},
		retired: map[metrics.Subject]metrics.Counters{},
		paths:   paths,

		received: map[string]*atomic.Int64{},
	}
	for _, p := range paths {
		g.received[p] = new(atomic.Int64)
	}
	return g
}

func (g *grouper) noteErr(err error) {
	if err != nil && len(g.errs) < 16 {
		g.errs = append(g.errs, err)
	}
}

// connEvent handles one registry event: a consumer's connection starts
// being counted as soon as both the connection and its consumer are known.
func (g *grouper) connEvent(ev transfer.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ci := ev.Conn
	if !ev.Open {
		delete(g.pending, ci.Peer)
		if _, ok := g.conns[ci.TID]; ok {
			delete(g.conns, ci.TID)
			g.gone[ci.TID] = metrics.Subject{Kind: metrics.KindPath, Name: ci.Path}
		}
		return
	}
	if _, ok := g.peers[ci.Peer]; ok {
		g.startConnLocked(ci)
		return
	}
	g.pending[ci.Peer] = ci
}

func (g *grouper) startConnLocked(ci transfer.ConnInfo) {
	if err := g.probe.AddThreads(ci.TID); err != nil {
		g.noteErr(fmt.Errorf("count data thread %d of path %s: %w", ci.TID, ci.Path, err))
		return
	}
	g.conns[ci.TID] = ci
}

// addConsumer starts counting a consumer thread of path.
func (g *grouper) addConsumer(tid int, path string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.probe.AddThreads(tid); err != nil {
		return fmt.Errorf("count consumer thread %d of path %s: %w", tid, path, err)
	}
	g.cons[tid] = path
	return nil
}

// addPeer says a consumer of path connected from local: the broker thread
// serving that connection is the path's data thread.
func (g *grouper) addPeer(local, path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.peers[local] = path
	if ci, ok := g.pending[local]; ok {
		delete(g.pending, local)
		g.startConnLocked(ci)
	}
}

// dropPeer forgets a consumer connection's local address.
func (g *grouper) dropPeer(local string) {
	g.mu.Lock()
	delete(g.peers, local)
	g.mu.Unlock()
}

// removeConsumer stops counting a consumer thread after the next read.
func (g *grouper) removeConsumer(tid int) {
	g.mu.Lock()
	if path, ok := g.cons[tid]; ok {
		delete(g.cons, tid)
		g.gone[tid] = metrics.Subject{Kind: metrics.KindThread, Name: ConsumerSubject(path)}
	}
	g.mu.Unlock()
}

// snapshot reads the probe and sums threads into subjects: one per path
// and one per path's consumers, present from the start so every column
// shows even before its first connection.
func (g *grouper) snapshot() (metrics.Snapshot, error) {
	rd, err := g.probe.Read()
	if err != nil {
		return metrics.Snapshot{}, fmt.Errorf("read probe counters: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	measured := g.probe.Measured()
	snap := metrics.Snapshot{Time: rd.Time, Mode: rd.Mode, Subjects: map[metrics.Subject]metrics.Counters{}}
	base := func(s metrics.Subject) metrics.Counters {
		if c, ok := g.retired[s]; ok {
			return c
		}
		return metrics.Counters{Measured: measured}
	}
	for _, p := range g.paths {
		for _, s := range []metrics.Subject{{Kind: metrics.KindPath, Name: p}, {Kind: metrics.KindThread, Name: ConsumerSubject(p)}} {
			snap.Subjects[s] = base(s)
		}
	}
	add := func(s metrics.Subject, c metrics.Counters) {
		cur, ok := snap.Subjects[s]
		if !ok {
			cur = base(s)
		}
		snap.Subjects[s] = cur.Add(c)
	}
	for tid, ci := range g.conns {
		if th, ok := rd.Threads[tid]; ok {
			add(metrics.Subject{Kind: metrics.KindPath, Name: ci.Path}, th.Counters)
		}
	}
	for tid, p := range g.cons {
		if th, ok := rd.Threads[tid]; ok {
			add(metrics.Subject{Kind: metrics.KindThread, Name: ConsumerSubject(p)}, th.Counters)
		}
	}
	var drop []int
	for tid, s := range g.gone {
		r := base(s)
		if th, ok := rd.Threads[tid]; ok {
			r = r.Add(th.Counters)
			add(s, th.Counters)
		}
		g.retired[s] = r
		drop = append(drop, tid)
		delete(g.gone, tid)
	}
	if len(drop) > 0 {
		g.noteErr(g.probe.RemoveThreads(drop...))
	}
	if !measured.Has(metrics.FDelivered) {
		for _, p := range g.paths {
			s := metrics.Subject{Kind: metrics.KindPath, Name: p}
			c := snap.Subjects[s]
			c.DeliveredBytes = uint64(g.received[p].Load())
			c.Measured |= metrics.FDelivered
			snap.Subjects[s] = c
		}
	}
	return snap, nil
}

// takeErrs returns and clears the errors seen since the last call.
func (g *grouper) takeErrs() []error {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.errs
	g.errs = nil
	return e
}
