package probes

import (
	"fmt"
	"strconv"

	"github.com/copyscope/copyscope/metrics"
)

// Grouping says how watch sums threads into subjects.
type Grouping string

const (
	// ByThread makes one subject per thread, named "comm:tid".
	ByThread Grouping = "thread"
	// ByProcess makes one subject per process, named "comm[pid]".
	ByProcess Grouping = "process"
	// ByComm makes one subject per process command name.
	ByComm Grouping = "comm"
	// ByPort makes one subject per local port, named ":port": each thread
	// counts under the local port of the socket it first moved data on
	// (a broker's listeners side by side when each connection has its
	// own thread); threads that moved none are "no socket", whose totals
	// drop when one of them finds its port and takes its counts along.
	ByPort Grouping = "port"
)

// NoSocket names the ByPort subject of threads not seen on a socket yet.
const NoSocket = "no socket"

// ParseGrouping accepts thread, process, comm or port.
func ParseGrouping(s string) (Grouping, error) {
	switch g := Grouping(s); g {
	case ByThread, ByProcess, ByComm, ByPort:
		return g, nil
	}
	return "", fmt.Errorf("unknown grouping %q (use thread, process, comm or port)", s)
}

// processNames maps each pid in r to its process name: the comm of the
// thread whose tid is the pid (the leader), else of its lowest tid.
func processNames(r Reading, into map[int]string) map[int]string {
	if into == nil {
		into = map[int]string{}
	}
	lowest := map[int]int{} // pid -> lowest tid seen, when no leader
	for tid, t := range r.Threads {
		if tid == t.PID {
			into[t.PID] = t.Comm
			continue
		}
		// A pseudo-thread (negative tid: the /proc backend's exited
		// threads) names the process only when nothing else does.
		if l, ok := lowest[t.PID]; !ok || (tid < l && tid > 0) || l < 0 {
			lowest[t.PID] = tid
		}
	}
	for pid, tid := range lowest {
		if _, ok := into[pid]; !ok {
			into[pid] = r.Threads[tid].Comm
		}
	}
	return into
}

// subjectFunc returns the subject of a thread under a grouping, naming
// processes from names.
func subjectFunc(by Grouping, names map[int]string) func(Thread) (metrics.Subject, bool) {
	return func(t Thread) (metrics.Subject, bool) {
		proc := names[t.PID]
		if proc == "" {
			proc = t.Comm
		}
		switch by {
		case ByThread:
			if t.TID < 0 {
				return metrics.Subject{Kind: metrics.KindThread, Name: proc + "[" + strconv.Itoa(t.PID) + "]:exited-threads"}, true
			}
			return metrics.Subject{Kind: metrics.KindThread, Name: t.Comm + ":" + strconv.Itoa(t.TID)}, true
		case ByProcess:
			if proc == "" {
				return metrics.Subject{Kind: metrics.KindProcess, Name: strconv.Itoa(t.PID)}, true
			}
			return metrics.Subject{Kind: metrics.KindProcess, Name: proc + "[" + strconv.Itoa(t.PID) + "]"}, true
		case ByComm:
			return metrics.Subject{Kind: metrics.KindComm, Name: proc}, true
		case ByPort:
			if t.Port == 0 {
				return metrics.Subject{Kind: metrics.KindPort, Name: NoSocket}, true
			}
			return metrics.Subject{Kind: metrics.KindPort, Name: ":" + strconv.Itoa(t.Port)}, true
		}
		return metrics.Subject{}, false
	}
}

// GroupBy sums a reading's threads into subjects by thread, process or
// command name. It is stateless: it relies on the backend keeping exited
// threads' last counts in every Reading (both backends do); use a Grouper
// when threads can be forgotten.
func GroupBy(r Reading, by Grouping) metrics.Snapshot {
	return GroupFunc(r, subjectFunc(by, processNames(r, nil)))
}

// GroupFunc sums a reading's threads into the subjects that subject
// returns; threads for which it returns false are left out. Like GroupBy
// it is stateless; NewGrouperFunc is its Grouper.
func GroupFunc(r Reading, subject func(Thread) (metrics.Subject, bool)) metrics.Snapshot {
	s := metrics.Snapshot{Time: r.Time, Mode: r.Mode, Subjects: map[metrics.Subject]metrics.Counters{}}
	for _, t := range r.Threads {
		sub, ok := subject(t)
		if !ok {
			continue
		}
		s.Subjects[sub] = addCounters(s.Subjects[sub], t.Counters)
	}
	return s
}

// addCounters sums counters, treating an empty accumulator (nothing
// measured yet) as the identity, so the measured set is the intersection
// over the threads actually summed.
func addCounters(acc, c metrics.Counters) metrics.Counters {
	if acc.Measured == 0 {
		c.SyscallsByName = copyNames(c.SyscallsByName)
		return c
	}
	return acc.Add(c)
}

func copyNames(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return nil
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Grouper sums threads into subjects across readings and keeps every
// subject's totals monotonic: the last counts of a thread that leaves the
// reading (forgotten by RemoveThreads, or a backend that drops exited
// threads) are retired into its subject, and a thread that exits keeps
// counting in the group it belonged to. Not safe for concurrent use.
type Grouper struct {
	subject func(Thread) (metrics.Subject, bool)
	by      Grouping        // "" when subject was given directly
	names   map[int]string  // pid -> process name, remembered
	last    map[int]grouped // tid -> its subject and last counters
	retired map[metrics.Subject]metrics.Counters
	live    map[metrics.Subject]bool // subjects with a live thread in the last reading
	// folded is, per process, the counts of released threads already
	// retired into their own subjects: its pseudo-thread holds them too.
	folded map[int]metrics.Counters
}

type grouped struct {
	subject  metrics.Subject
	counters metrics.Counters
	// base is what the thread had counted when its subject was renamed:
	// that part stays with the old name, so only the rest counts here.
	base metrics.Counters
	pid  int
}

// share is the thread's part of its current subject.
func (gr grouped) share() metrics.Counters {
	if gr.base.Measured == 0 {
		return gr.counters
	}
	return gr.counters.Sub(gr.base)
}

// NewGrouper groups by thread, process or command name.
func NewGrouper(by Grouping) *Grouper {
	g := newGrouper(nil)
	g.by = by
	return g
}

// NewGrouperFunc groups with a caller's mapping from thread to subject
// (the demo maps data threads to transfer paths); threads it returns false
// for are left out until it maps them.
func NewGrouperFunc(subject func(Thread) (metrics.Subject, bool)) *Grouper {
	return newGrouper(subject)
}

func newGrouper(subject func(Thread) (metrics.Subject, bool)) *Grouper {
	return &Grouper{
		subject: subject,
		names:   map[int]string{},
		last:    map[int]grouped{},
		retired: map[metrics.Subject]metrics.Counters{},
		live:    map[metrics.Subject]bool{},
		folded:  map[int]metrics.Counters{},
	}
}

// Retire folds the last counts of threads into their subjects now and
// forgets which subject they had, for a caller about to stop watching them
// (RemoveThreads): a thread id that shows up again later, reused by a new
// thread, is grouped afresh instead of adding to its old subject.
func (g *Grouper) Retire(tids ...int) {
	for _, tid := range tids {
		gr, ok := g.last[tid]
		if !ok {
			continue
		}
		g.retired[gr.subject] = addCounters(g.retired[gr.subject], gr.share())
		delete(g.last, tid)
	}
}

// renames reports whether a thread now in subject moves when its subject
// changes: under the built-in groupings, on a rename; by port, only out
// of "no socket" (an event loop's thread keeps its first port).
func (g *Grouper) renames(from metrics.Subject) bool {
	if g.subject != nil {
		return false
	}
	return g.by != ByPort || from.Name == NoSocket
}

// release forgets threads the backend folded into their process's
// pseudo-thread (tid -pid), which counts on for them. A renamed thread's
// base goes with its counts, so what its old name kept is not counted
// again under the new one. By port, the pseudo-thread (no port) is not the
// thread's subject: the thread's counts stay with its port and the
// pseudo-thread, which now holds them too, counts them no more.
func (g *Grouper) release(tids []int) {
	for _, tid := range tids {
		gr, ok := g.last[tid]
		delete(g.last, tid)
		switch {
		case !ok:
		case g.by == ByPort:
			g.retired[gr.subject] = addCounters(g.retired[gr.subject], gr.share())
			g.folded[gr.pid] = addCounters(g.folded[gr.pid], gr.counters)
		case gr.base.Measured != 0:
			g.folded[gr.pid] = addCounters(g.folded[gr.pid], gr.base)
		}
	}
}

// Live reports whether a subject had a thread that had not exited in the
// last reading given to Snapshot.
func (g *Grouper) Live(s metrics.Subject) bool { return g.live[s] }

// Snapshot groups one reading. A live thread whose name changed (exec,
// prctl) moves to its new subject from this reading on; what it counted
// before stays with the old one. With a caller's mapping (NewGrouperFunc)
// a thread keeps the subject it was first grouped into.
func (g *Grouper) Snapshot(r Reading) metrics.Snapshot {
	subject := g.subject
	if subject == nil {
		subject = subjectFunc(g.by, processNames(r, g.names))
	}
	s := metrics.Snapshot{Time: r.Time, Mode: r.Mode, Subjects: map[metrics.Subject]metrics.Counters{}}
	clear(g.live)
	g.release(r.Released)
	for tid, t := range r.Threads {
		prev, known := g.last[tid]
		cur := grouped{subject: prev.subject, counters: t.Counters, base: prev.base, pid: t.PID}
		if f, ok := g.folded[t.PID]; ok && tid < 0 {
			cur.base = addCounters(cur.base, f)
			delete(g.folded, t.PID)
		}
		if !known {
			var ok bool
			if cur.subject, ok = subject(t); !ok {
				continue
			}
		} else if now, ok := subject(t); ok && g.renames(prev.subject) && !t.Exited && now != prev.subject {
			if g.by == ByPort {
				// Its first socket: "no socket" was a placeholder, so
				// the thread's whole count moves to its port.
				cur.subject = now
			} else {
				// Renamed: the old subject keeps the thread's counts so far.
				g.retired[prev.subject] = addCounters(g.retired[prev.subject], cur.share())
				cur.subject, cur.base = now, t.Counters
			}
		}
		g.last[tid] = cur
		if !t.Exited {
			g.live[cur.subject] = true
		}
		s.Subjects[cur.subject] = addCounters(s.Subjects[cur.subject], cur.share())
	}
	for tid, gr := range g.last {
		if _, present := r.Threads[tid]; present {
			continue
		}
		g.retired[gr.subject] = addCounters(g.retired[gr.subject], gr.share())
		delete(g.last, tid)
	}
	for sub, c := range g.retired {
		s.Subjects[sub] = addCounters(s.Subjects[sub], c)
	}
	return s
}
