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
// "consumer:<path>". Summing and retiring are probes.Grouper's: a thread
// that goes away is counted one last time, then retired into its subject,
// so cumulative counts never drop.
type grouper struct {
	mu      sync.Mutex
	probe   probes.Probe
	sum     *probes.Grouper
	conns   map[int]transfer.ConnInfo // data threads being counted, by tid
	pending map[string]transfer.ConnInfo
	peers   map[string]string       // consumer local address -> path
	cons    map[int]string          // consumer tid -> path
	gone    map[int]metrics.Subject // counted once more, then retired
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
		paths:   paths,

		received: map[string]*atomic.Int64{},
	}
	g.sum = probes.NewGrouperFunc(g.subjectLocked)
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

// subjectLocked maps a thread to its subject: a data thread to its path,
// a consumer thread to its path's consumers (also for the one last reading
// after they went away); any other thread is not the demo's.
func (g *grouper) subjectLocked(t probes.Thread) (metrics.Subject, bool) {
	if ci, ok := g.conns[t.TID]; ok {
		return metrics.Subject{Kind: metrics.KindPath, Name: ci.Path}, true
	}
	if p, ok := g.cons[t.TID]; ok {
		return metrics.Subject{Kind: metrics.KindThread, Name: ConsumerSubject(p)}, true
	}
	s, ok := g.gone[t.TID]
	return s, ok
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
	snap := g.sum.Snapshot(rd)
	measured := g.probe.Measured()
	for _, p := range g.paths {
		for _, s := range []metrics.Subject{{Kind: metrics.KindPath, Name: p}, {Kind: metrics.KindThread, Name: ConsumerSubject(p)}} {
			if _, ok := snap.Subjects[s]; !ok {
				snap.Subjects[s] = metrics.Counters{Measured: measured}
			}
		}
	}
	// Threads that went away were counted in this reading for the last
	// time: retire them and stop watching.
	if len(g.gone) > 0 {
		drop := make([]int, 0, len(g.gone))
		for tid := range g.gone {
			drop = append(drop, tid)
		}
		clear(g.gone)
		g.sum.Retire(drop...)
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
