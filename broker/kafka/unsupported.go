package kafka

import "sync"

// seenAPIs remembers which unserved API versions clients asked for, so
// each is logged once, not once per request.
type seenAPIs struct {
	mu   sync.Mutex
	seen map[[2]int16]bool
}

// maxSeenAPIs bounds the set; kmsg knows fewer API versions than this.
const maxSeenAPIs = 4096

// firstTime reports whether key/version is asked for the first time.
func (s *seenAPIs) firstTime(key, version int16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]int16{key, version}
	if s.seen[k] || len(s.seen) >= maxSeenAPIs {
		return false
	}
	if s.seen == nil {
		s.seen = map[[2]int16]bool{}
	}
	s.seen[k] = true
	return true
}
