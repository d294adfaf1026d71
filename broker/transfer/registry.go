package transfer

import (
	"sync"
	"time"
)

// ConnInfo describes one connection's data thread, for the probes.
type ConnInfo struct {
	ID       uint64    // unique per registry
	TID      int       // OS thread id doing the connection's I/O
	Path     string    // transfer path name
	Peer     string    // remote address
	Listener string    // local listener address
	Opened   time.Time // when the connection was accepted
}

// Event is a connection appearing (Open true) or going away.
type Event struct {
	Open bool
	Conn ConnInfo
}

// Registry publishes the data threads of live connections. It is safe for
// concurrent use; the zero value is not usable, call NewRegistry.
type Registry struct {
	mu     sync.Mutex
	nextID uint64
	conns  map[uint64]ConnInfo
	subs   map[chan Event]struct{}
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{conns: map[uint64]ConnInfo{}, subs: map[chan Event]struct{}{}}
}

// Register records a connection's thread and returns the function that
// removes it. Subscribers are told of both.
func (r *Registry) Register(ci ConnInfo) (unregister func()) {
	r.mu.Lock()
	r.nextID++
	ci.ID = r.nextID
	if ci.Opened.IsZero() {
		ci.Opened = time.Now()
	}
	r.conns[ci.ID] = ci
	r.publishLocked(Event{Open: true, Conn: ci})
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			delete(r.conns, ci.ID)
			r.publishLocked(Event{Open: false, Conn: ci})
			r.mu.Unlock()
		})
	}
}

// List returns the live connections.
func (r *Registry) List() []ConnInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ConnInfo, 0, len(r.conns))
	for _, c := range r.conns {
		out = append(out, c)
	}
	return out
}

// Subscribe returns a channel of events, starting with an Open event for
// every connection already live, and a cancel function. A subscriber that
// falls more than 1024 events behind is dropped (its channel closed) rather
// than blocking the broker.
func (r *Registry) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 1024)
	r.mu.Lock()
	for _, c := range r.conns {
		ch <- Event{Open: true, Conn: c}
	}
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() {
		r.mu.Lock()
		if _, ok := r.subs[ch]; ok {
			delete(r.subs, ch)
			close(ch)
		}
		r.mu.Unlock()
	}
}

func (r *Registry) publishLocked(ev Event) {
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
			delete(r.subs, ch)
			close(ch)
		}
	}
}
