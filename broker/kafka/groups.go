package kafka

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The group coordinator of a single broker (Kafka's classic rebalance
// protocol, KIP-848's ConsumerGroupHeartbeat is not served). The broker
// keeps members, generations and the chosen protocol; assignment is the
// clients' (the leader computes it and hands it over in SyncGroup).
//
// Requests that must wait for other members (JoinGroup until every member
// has rejoined, a follower's SyncGroup until the leader's) block the
// connection's own thread on a channel, as Kafka keeps a connection muted
// while its request is pending. The only goroutine of the coordinator is
// the sweeper, which evicts members whose session expired and ends
// rebalances whose timeout passed; no request starts a goroutine.

// Group limits, as Kafka's broker defaults where Kafka has one.
const (
	minSessionTimeout = 6 * time.Second  // group.min.session.timeout.ms
	maxSessionTimeout = 30 * time.Minute // group.max.session.timeout.ms
	// maxRebalanceTimeout bounds how long a JoinGroup can hold a group
	// (and the connection) waiting for members that do not rejoin.
	maxRebalanceTimeout = 30 * time.Minute
	// maxGroupMembers is group.max.size: a hostile client cannot grow a
	// group without bound.
	maxGroupMembers = 1000
	// maxMemberMetadata bounds one member's protocol metadata and
	// assignment: real consumers send a few hundred bytes.
	maxMemberMetadata = 1 << 20
	// maxCommitMetadata is offset.metadata.max.bytes.
	maxCommitMetadata = 4096
	// sweepEvery is the resolution of session and rebalance timeouts.
	sweepEvery = 100 * time.Millisecond
)

// groupState is a classic group's state, named as Kafka names them in
// ListGroups and DescribeGroups.
type groupState int8

const (
	groupEmpty groupState = iota
	groupPreparingRebalance
	groupCompletingRebalance
	groupStable
	groupDead
)

func (s groupState) String() string {
	switch s {
	case groupEmpty:
		return "Empty"
	case groupPreparingRebalance:
		return "PreparingRebalance"
	case groupCompletingRebalance:
		return "CompletingRebalance"
	case groupStable:
		return "Stable"
	}
	return "Dead"
}

// member is one consumer of a group.
type member struct {
	id         string
	instanceID *string // static membership (KIP-345)
	clientID   string
	clientHost string
	protocols  []kmsg.JoinGroupRequestProtocol

	session   time.Duration
	rebalance time.Duration
	lastSeen  time.Time // the session runs from here

	assignment []byte
	joined     bool                         // has (re)joined the rebalance in progress
	join       chan *kmsg.JoinGroupResponse // non-nil while its JoinGroup waits
	sync       chan syncAnswer              // non-nil while its SyncGroup waits
}

type syncAnswer struct {
	code       int16
	assignment []byte
}

// topicPartition names a committed offset.
type topicPartition struct {
	topic     string
	partition int32
}

// committed is one partition's committed offset.
type committed struct {
	offset      int64
	leaderEpoch int32
	metadata    string
}

// group is one consumer group; mu guards everything in it.
type group struct {
	mu           sync.Mutex
	id           string
	state        groupState
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	static       map[string]string    // instance id -> member id
	pending      map[string]time.Time // member ids handed out with MEMBER_ID_REQUIRED, until
	deadline     time.Time            // when the rebalance in progress ends
	offsets      map[topicPartition]committed
}

// coordinator owns every group and the committed offsets log.
type coordinator struct {
	store   *log.Store
	logf    func(format string, args ...any)
	closing <-chan struct{}
	wg      *sync.WaitGroup

	mu      sync.Mutex
	groups  map[string]*group
	offsets *log.Partition // partition 0 of offsetsTopic, created on first commit

	loaded chan struct{} // closed when the offsets log has been replayed

	// records counts the offsets log's records (replayed and appended
	// since the last compaction); compactMin is the count below which it
	// is never compacted (offsets_compact.go).
	records      atomic.Int64
	compactMin   int64
	compactEvery time.Duration
	compacting   atomic.Bool
	lastCompact  time.Time // (sweep) when compaction was last considered
}

// newCoordinator makes the coordinator of store; the goroutines it starts
// are counted in wg and end when closing is closed.
func newCoordinator(store *log.Store, logf func(string, ...any), closing <-chan struct{}, wg *sync.WaitGroup) *coordinator {
	return &coordinator{store: store, logf: logf, closing: closing, wg: wg, groups: map[string]*group{}, loaded: make(chan struct{}),
		compactMin: defaultCompactMin, compactEvery: compactCheckEvery}
}

// ready reports whether the offsets log has been replayed; until then
// group requests get COORDINATOR_LOAD_IN_PROGRESS and clients retry.
func (c *coordinator) ready() bool {
	select {
	case <-c.loaded:
		return true
	default:
		return false
	}
}

// group returns the group id, creating it (Empty) when create is set.
func (c *coordinator) group(id string, create bool) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	if g == nil && create {
		g = &group{id: id, members: map[string]*member{}, static: map[string]string{},
			pending: map[string]time.Time{}, offsets: map[topicPartition]committed{}}
		c.groups[id] = g
	}
	return g
}

// snapshot returns every group, for sweeps and listings.
func (c *coordinator) snapshot() []*group {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		out = append(out, g)
	}
	return out
}

// forget drops g if it is empty and has no offsets (with g.mu held).
func (c *coordinator) forget(g *group) {
	if len(g.members) > 0 || len(g.offsets) > 0 || len(g.pending) > 0 || g.state != groupEmpty {
		return
	}
	c.mu.Lock()
	if c.groups[g.id] == g {
		delete(c.groups, g.id)
	}
	c.mu.Unlock()
	g.state = groupDead
}

// newMemberID is the client id and a random suffix, as Kafka makes them.
func newMemberID(clientID string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	if len(clientID) > 200 {
		clientID = clientID[:200]
	}
	return clientID + "-" + hex.EncodeToString(b[:])
}

// sweep runs until closing: every sweepEvery it evicts expired members
// and completes rebalances whose timeout passed.
func (c *coordinator) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case now := <-t.C:
			for _, g := range c.snapshot() {
				g.mu.Lock()
				c.expire(g, now)
				g.mu.Unlock()
			}
			c.maybeCompact(now)
		}
	}
}

// expire applies the timeouts of g at now (with g.mu held).
func (c *coordinator) expire(g *group, now time.Time) {
	for id, until := range g.pending {
		if now.After(until) {
			delete(g.pending, id)
		}
	}
	removed := false
	for _, m := range g.members {
		if m.join == nil && now.Sub(m.lastSeen) > m.session {
			c.logf("group %s: member %s (client %s) missed its %v session timeout; removed", g.id, m.id, m.clientID, m.session)
			g.remove(m, kerr.UnknownMemberID.Code)
			removed = true
		}
	}
	switch {
	case g.state == groupPreparingRebalance && (g.allJoined() || now.After(g.deadline)):
		g.completeJoin(now)
	case removed:
		g.rebalance(now)
	}
	c.forget(g)
}

// remove takes m out of g, answering its waiting requests with code.
func (g *group) remove(m *member, code int16) {
	delete(g.members, m.id)
	if m.instanceID != nil && g.static[*m.instanceID] == m.id {
		delete(g.static, *m.instanceID)
	}
	if m.join != nil {
		r := kmsg.NewPtrJoinGroupResponse()
		r.ErrorCode, r.Generation, r.MemberID = code, -1, m.id
		m.join <- r
		m.join = nil
	}
	if m.sync != nil {
		m.sync <- syncAnswer{code: code}
		m.sync = nil
	}
}

// rebalance starts a rebalance after the membership changed: members must
// rejoin (pending SyncGroups get REBALANCE_IN_PROGRESS). A group left with
// no members becomes Empty at once.
func (g *group) rebalance(now time.Time) {
	if g.state == groupPreparingRebalance {
		if g.allJoined() {
			g.completeJoin(now)
		}
		return
	}
	if len(g.members) == 0 {
		g.generation++
		g.state, g.protocol, g.leader = groupEmpty, "", ""
		return
	}
	g.state = groupPreparingRebalance
	var longest time.Duration
	for _, m := range g.members {
		m.joined = false
		longest = max(longest, m.rebalance)
		if m.sync != nil {
			m.sync <- syncAnswer{code: kerr.RebalanceInProgress.Code}
			m.sync = nil
		}
	}
	g.deadline = now.Add(longest)
}

// allJoined reports whether every member has rejoined and no member id
// handed out with MEMBER_ID_REQUIRED is still expected.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.members {
		if !m.joined {
			return false
		}
	}
	return true
}

// completeJoin ends the join phase: members that did not rejoin are
// removed, the generation advances, the protocol every member supports
// is chosen and each waiting JoinGroup is answered, the leader's with
// every member's metadata.
func (g *group) completeJoin(now time.Time) {
	for _, m := range g.members {
		if !m.joined {
			g.remove(m, kerr.UnknownMemberID.Code)
		}
	}
	g.pending = map[string]time.Time{}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = groupEmpty, "", ""
		return
	}
	g.protocol = g.chooseProtocol()
	if _, ok := g.members[g.leader]; !ok {
		g.leader = ""
		for id := range g.members {
			if g.leader == "" || id < g.leader {
				g.leader = id
			}
		}
	}
	g.state = groupCompletingRebalance
	for _, m := range g.members {
		m.assignment = nil
		m.lastSeen = now
		if m.join == nil {
			continue
		}
		m.join <- g.joinResponse(m)
		m.join = nil
	}
}

// joinResponse is m's answer for the generation just formed.
func (g *group) joinResponse(m *member) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Generation, r.ProtocolType, r.Protocol = g.generation, strp(g.protocolType), strp(g.protocol)
	r.LeaderID, r.MemberID = g.leader, m.id
	if m.id == g.leader {
		for _, o := range g.members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID, rm.InstanceID = o.id, o.instanceID
			rm.ProtocolMetadata = o.metadata(g.protocol)
			r.Members = append(r.Members, rm)
		}
	}
	return r
}

func (m *member) metadata(protocol string) []byte {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return p.Metadata
		}
	}
	return nil
}

func (m *member) supports(protocol string) bool {
	for _, p := range m.protocols {
		if p.Name == protocol {
			return true
		}
	}
	return false
}

// candidates are the protocols every member supports, in the preference
// order of one of them.
func (g *group) candidates() []string { return g.candidatesExcept("") }

// candidatesExcept are the protocols every member but id supports (all
// protocols anyone names, when id is the only member).
func (g *group) candidatesExcept(id string) []string {
	var out []string
	first := true
	for _, m := range g.members {
		if m.id == id {
			continue
		}
		if first {
			for _, p := range m.protocols {
				out = append(out, p.Name)
			}
			first = false
			continue
		}
		kept := out[:0]
		for _, name := range out {
			if m.supports(name) {
				kept = append(kept, name)
			}
		}
		out = kept
	}
	return out
}

// chooseProtocol lets every member vote, as Kafka does, for the first
// protocol of its own preference list that all members support.
func (g *group) chooseProtocol() string {
	cands := g.candidates()
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if slices.Contains(cands, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, name := range cands {
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// lockGroup returns group id locked, creating it when create is set, or
// nil. A group the sweeper dropped between lookup and lock is looked up
// again.
func (c *coordinator) lockGroup(id string, create bool) *group {
	for {
		g := c.group(id, create)
		if g == nil {
			return nil
		}
		g.mu.Lock()
		if g.state != groupDead {
			return g
		}
		g.mu.Unlock()
	}
}

// wait blocks the connection's thread until ch answers or the server
// shuts down (then ok is false).
func wait[T any](c *coordinator, ch <-chan T) (v T, ok bool) {
	select {
	case v = <-ch:
		return v, true
	case <-c.closing:
		return v, false
	}
}

// checkMember finds the member a request names, checking its static
// instance id; code is UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID when it
// fails (with g.mu held).
func (g *group) checkMember(memberID string, instanceID *string) (*member, int16) {
	if instanceID != nil {
		if id, ok := g.static[*instanceID]; ok && id != memberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	m := g.members[memberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	return m, 0
}
