// Package promexport exposes copyscope's cumulative counters to Prometheus:
// a collector fed by the sampler's snapshots (data flows one way: probes ->
// metrics -> here) and an HTTP server for /metrics, bound to loopback
// unless told otherwise.
//
// Every counter is a Prometheus counter named copyscope_<what>_total (or
// _seconds_total), labelled by subject: subject_kind (thread, process, comm, path),
// subject (the subject's name, as in watch --json), and comm and pid when
// the subject's name carries them. A field the probe mode cannot measure
// has no series at all. Subjects whose threads have all exited are dropped
// from the exposition after the interval they ended in.
//
// Cardinality is bounded: at most MaxSubjects subjects get series of their
// own (first come, first served); later ones are summed into one subject
// named "_other" of the same kind, whose counters never go backwards, and
// copyscope_exporter_subjects_folded says how many are in it. With the
// default of 500 and about 30 series per subject, the exposition stays
// under ~15,000 series even for --by thread on a 10,000-thread server.
package promexport

import (
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/copyscope/copyscope/metrics"
	"github.com/copyscope/copyscope/probes"
)

// DefaultMaxSubjects is the number of subjects given series of their own
// when Options.MaxSubjects is 0.
const DefaultMaxSubjects = 500

// OtherSubject names the subject that sums the subjects beyond the limit.
const OtherSubject = "_other"

// Collector is a prometheus.Collector of the latest snapshot. Update and
// Collect may run concurrently: Collect works on the state Update left.
type Collector struct {
	mu      sync.Mutex
	max     int
	info    probeInfo
	cur     map[metrics.Subject]metrics.Counters // exposed subjects, with _other
	own     map[metrics.Subject]metrics.Counters // subjects with series of their own
	other   map[metrics.Kind]*folded
	cost    probes.Cost
	hasCost bool
}

// folded is the _other subject of one kind.
type folded struct {
	kind    metrics.Kind
	members map[string]metrics.Counters // subject name -> last counters
	retired metrics.Counters            // last counters of members gone
	sumOK   bool                        // retired holds something
}

// probeInfo is the copyscope_probe_info labels.
type probeInfo struct {
	mode     metrics.Mode
	estimate bool
	grouping string
	cost     string
}

// NewCollector returns a collector with series for at most maxSubjects
// subjects (0: DefaultMaxSubjects). mode, grouping and cost describe the
// probes in copyscope_probe_info.
func NewCollector(maxSubjects int, mode metrics.Mode, grouping, cost string) *Collector {
	if maxSubjects <= 0 {
		maxSubjects = DefaultMaxSubjects
	}
	return &Collector{
		max:   maxSubjects,
		info:  probeInfo{mode: mode, estimate: mode != metrics.ModeEBPF, grouping: grouping, cost: cost},
		cur:   map[metrics.Subject]metrics.Counters{},
		own:   map[metrics.Subject]metrics.Counters{},
		other: map[metrics.Kind]*folded{},
	}
}

// Update takes the cumulative counters of a new snapshot. keep says which
// subjects are still to be shown (live, or active in the interval that
// just ended); the others are dropped from the exposition. The snapshot's
// mode, when set, is the one copyscope_probe_info reports.
func (c *Collector) Update(s metrics.Snapshot, keep func(metrics.Subject) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Mode != "" {
		c.info.mode, c.info.estimate = s.Mode, s.Mode != metrics.ModeEBPF
	}
	// Subjects that went away free their place.
	for sub := range c.own {
		if _, ok := s.Subjects[sub]; !ok || !keep(sub) {
			delete(c.own, sub)
		}
	}
	for _, f := range c.other {
		for name, last := range f.members {
			sub := metrics.Subject{Kind: f.kind, Name: name}
			if cnt, ok := s.Subjects[sub]; ok && keep(sub) {
				f.members[name] = cnt
				continue
			}
			f.retired = addAll(f.retired, last, f.sumOK)
			f.sumOK = true
			delete(f.members, name)
		}
	}
	// New subjects in a stable order, so which ones fold is reproducible.
	subs := make([]metrics.Subject, 0, len(s.Subjects))
	for sub := range s.Subjects {
		subs = append(subs, sub)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	for _, sub := range subs {
		if !keep(sub) {
			continue
		}
		cnt := s.Subjects[sub]
		if _, ok := c.own[sub]; ok || (len(c.own) < c.max && !c.isMember(sub)) {
			c.own[sub] = cnt
			continue
		}
		f := c.other[sub.Kind]
		if f == nil {
			f = &folded{kind: sub.Kind, members: map[string]metrics.Counters{}}
			c.other[sub.Kind] = f
		}
		f.members[sub.Name] = cnt
	}
	c.rebuild()
}

// isMember reports whether a subject is folded into _other already.
func (c *Collector) isMember(sub metrics.Subject) bool {
	f := c.other[sub.Kind]
	if f == nil {
		return false
	}
	_, ok := f.members[sub.Name]
	return ok
}

// rebuild computes the exposed subjects: own ones and one _other per kind.
func (c *Collector) rebuild() {
	cur := make(map[metrics.Subject]metrics.Counters, len(c.own)+len(c.other))
	for sub, cnt := range c.own {
		cur[sub] = cnt
	}
	for kind, f := range c.other {
		sum, ok := f.retired, f.sumOK
		for _, cnt := range f.members {
			sum = addAll(sum, cnt, ok)
			ok = true
		}
		if ok {
			cur[metrics.Subject{Kind: kind, Name: OtherSubject}] = sum
		}
	}
	c.cur = cur
}

// addAll sums counters; the measured set is the intersection, except that
// an empty accumulator (started false) takes the other's.
func addAll(acc, c metrics.Counters, started bool) metrics.Counters {
	if !started {
		// Adding to an all-measured zero copies c, names map included.
		return metrics.Counters{Measured: c.Measured}.Add(c)
	}
	return acc.Add(c)
}

// SetCost records the probe's own cost for the copyscope_probe_* series.
func (c *Collector) SetCost(cost probes.Cost) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cost, c.hasCost = cost, true
}

// Folded is how many subjects are summed into _other now.
func (c *Collector) Folded() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.other {
		n += len(f.members)
	}
	return n
}

var (
	procName   = regexp.MustCompile(`^(.*)\[(\d+)\]$`)
	threadName = regexp.MustCompile(`^(.*):(\d+)$`)
)

// subjectLabels returns kind, subject, comm and pid for a subject: comm
// and pid come from the "comm[pid]" (process) and "comm:tid" (thread)
// names, and pid is the thread id for a thread.
func subjectLabels(sub metrics.Subject) []string {
	comm, pid := "", ""
	switch sub.Kind {
	case metrics.KindProcess:
		if m := procName.FindStringSubmatch(sub.Name); m != nil {
			comm, pid = m[1], m[2]
		}
	case metrics.KindThread:
		if m := threadName.FindStringSubmatch(sub.Name); m != nil {
			comm, pid = m[1], m[2]
		}
	case metrics.KindComm:
		comm = sub.Name
	}
	if sub.Name == OtherSubject {
		comm, pid = "", ""
	}
	return []string{string(sub.Kind), sub.Name, comm, pid}
}

// Describe sends nothing: the collector is unchecked (its series come and
// go with subjects), which client_golang allows.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the series of the latest snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	cur, cost, hasCost, info, folded := c.cur, c.cost, c.hasCost, c.info, 0
	for _, f := range c.other {
		folded += len(f.members)
	}
	c.mu.Unlock()
	// cur is replaced, never changed, by Update: safe to read unlocked.
	for sub, cnt := range cur {
		collectSubject(ch, subjectLabels(sub), cnt)
	}
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1,
		string(info.mode), strconv.FormatBool(info.estimate), info.grouping, info.cost)
	ch <- prometheus.MustNewConstMetric(descFolded, prometheus.GaugeValue, float64(folded))
	if hasCost {
		collectCost(ch, cost)
	}
}
