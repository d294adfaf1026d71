package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxPartitions bounds a topic's partition count.
const maxPartitions = 10000

// cleanMarker is written by Close after every partition is sealed and
// snapshotted, and removed (durably) by Open: its presence means no
// segment needs a scan.
const cleanMarker = ".clean-shutdown"

// lockName is the flock-ed file holding the owning broker's pid.
const lockName = ".lock"

// deletedSuffix marks a partition directory being removed.
const deletedSuffix = ".deleted"

// Store is a data directory of topic-partition logs, owned by one process.
type Store struct {
	dir      string
	cfg      Config
	lock     *os.File
	pathLock *pathLock
	dirInfo  os.FileInfo             // the directory Open locked, to notice it removed or replaced
	lost     atomic.Pointer[failure] // set once the directory is gone: appends are refused
	recovery RecoveryStats           // what Open's recovery cut off

	mu     sync.RWMutex
	topics map[string][]*Partition
	closed bool

	stop chan struct{}
	done chan struct{}
}

// Open takes the data directory dir (creating it), locks it against other
// brokers and recovers every partition in it.
func Open(dir string, cfg Config) (*Store, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("open log store %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w (use --data to a writable directory)", dir, err)
	}
	pl, err := lockPath(dir)
	if err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		_ = pl.release()
		return nil, err
	}
	s := &Store{dir: dir, cfg: cfg, lock: lock, pathLock: pl, topics: map[string][]*Partition{},
		stop: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) (*Store, error) {
		for _, ps := range s.topics {
			for _, p := range ps {
				if p != nil {
					_ = p.shutdown(false)
				}
			}
		}
		_ = lock.Close()
		_ = pl.release()
		return nil, err
	}
	if s.dirInfo, err = lock.Stat(); err == nil {
		s.dirInfo, err = os.Stat(dir)
	}
	if err != nil {
		return fail(fmt.Errorf("stat data directory %s: %w", dir, err))
	}
	clean, err := takeCleanMarker(dir)
	if err != nil {
		return fail(err)
	}
	parts, err := scanPartitions(dir)
	if err != nil {
		return fail(err)
	}
	s.recoverAll(parts, clean)
	s.place(parts)
	s.fillGaps()
	s.logRecovery()
	go s.background()
	return s, nil
}

// takeCleanMarker reports whether the last shutdown was clean and removes
// its marker, so a crash from now on is seen as one.
func takeCleanMarker(dir string) (bool, error) {
	marker := filepath.Join(dir, cleanMarker)
	if _, err := os.Stat(marker); err != nil {
		return false, nil
	}
	if err := os.Remove(marker); err != nil {
		return true, fmt.Errorf("remove %s: %w (check that the data directory is writable)", marker, err)
	}
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("sync data directory %s: %w", dir, err)
	}
	return true, nil
}

// foundPartition is a partition directory found at startup, and what
// recovering it gave.
type foundPartition struct {
	name  string
	topic string
	id    int32
	p     *Partition
	err   error
}

// scanPartitions lists the partition directories of dir, removing what a
// deletion left behind.
func scanPartitions(dir string) ([]*foundPartition, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read data directory %s: %w", dir, err)
	}
	var parts []*foundPartition
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if strings.HasSuffix(e.Name(), deletedSuffix) {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			continue
		}
		if topic, id, ok := splitPartitionDir(e.Name()); ok {
			parts = append(parts, &foundPartition{name: e.Name(), topic: topic, id: id})
		}
	}
	return parts, nil
}

// recoverAll opens every found partition. They recover independently: one
// worker per CPU, so scans of several unclean active segments overlap.
func (s *Store) recoverAll(parts []*foundPartition, clean bool) {
	work := make(chan *foundPartition)
	var wg sync.WaitGroup
	var opened atomic.Int64
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(parts)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f.p, f.err = openPartition(filepath.Join(s.dir, f.name), f.topic, f.id, &s.cfg, clean)
				if f.err == nil && s.cfg.MaxOpenSegmentFiles >= 0 && 2*opened.Add(1) > int64(s.cfg.MaxOpenSegmentFiles) {
					f.p.hibernate() // keep startup within the open-file cap
				}
			}
		}()
	}
	for _, f := range parts {
		work <- f
	}
	close(work)
	wg.Wait()
}

// place puts the recovered partitions into their topics; one that failed
// is set aside (its slot stays nil: fillGaps decides).
func (s *Store) place(parts []*foundPartition) {
	for _, f := range parts {
		if f.err != nil {
			s.setAside(f.name, f.err)
		}
		ps := s.topics[f.topic]
		for int32(len(ps)) <= f.id {
			ps = append(ps, nil)
		}
		ps[f.id] = f.p
		s.topics[f.topic] = ps
	}
}

// lockDir takes an exclusive flock on dir/.lock and writes our pid in it.
func lockDir(dir string) (*os.File, error) {
	name := filepath.Join(dir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w (use --data to a writable directory)", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(name)
		_ = f.Close()
		pid := strings.TrimSpace(string(b))
		if pid == "" {
			pid = "unknown"
		}
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &lockedError{dir: dir, pid: pid}
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write lock file %s: %w (use --data to a writable directory)", name, err)
		}
	} else {
		_ = f.Close()
		return nil, fmt.Errorf("write lock file %s: %w (use --data to a writable directory)", name, err)
	}
	return f, nil
}

// background runs the interval fsync and retention until Close.
func (s *Store) background() {
	defer close(s.done)
	var flush <-chan time.Time
	if s.cfg.Fsync == FsyncInterval {
		t := time.NewTicker(s.cfg.FsyncInterval)
		defer t.Stop()
		flush = t.C
	}
	ret := time.NewTicker(s.cfg.RetentionCheck)
	defer ret.Stop()
	watch := time.NewTicker(dirCheckInterval)
	defer watch.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-watch.C:
			if err := s.checkDir(); err != nil {
				s.dirLost(err)
			}
			s.enforceOpenCap()
		case <-flush:
			for _, p := range s.partitions() {
				_ = p.sync() // a failure is kept by the partition and refuses later appends
			}
		case now := <-ret.C:
			for _, p := range s.partitions() {
				_, _ = p.Retain(now) // retried at the next check
			}
		}
	}
}

func (s *Store) partitions() []*Partition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Partition
	for _, ps := range s.topics {
		out = append(out, ps...)
	}
	return out
}

// MaxTopicLen is Kafka's limit on the length of a topic name.
const MaxTopicLen = 249

// ValidateTopic applies Kafka's topic name rules, the one check every
// name passes before it gets near the file system or a response: 1 to
// MaxTopicLen characters of [a-zA-Z0-9._-], not "." or "..". The error
// wraps ErrInvalidTopic and says what to change.
func ValidateTopic(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: topic name %q is not allowed", ErrInvalidTopic, name)
	}
	if len(name) > MaxTopicLen {
		return fmt.Errorf("%w: topic name of %d characters is longer than %d", ErrInvalidTopic, len(name), MaxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			return fmt.Errorf("%w: topic name %q has %q: use only letters, digits, '.', '_' and '-'", ErrInvalidTopic, name, ch)
		}
	}
	return nil
}

// CreateTopic creates a topic with partitions partitions.
func (s *Store) CreateTopic(name string, partitions int32) error {
	if err := ValidateTopic(name); err != nil {
		return err
	}
	if partitions < 1 || partitions > maxPartitions {
		return fmt.Errorf("%w: topic %s needs 1 to %d partitions, got %d", ErrInvalidPartitions, name, maxPartitions, partitions)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("create topic %s: the store is closed", name)
	}
	if f := s.lost.Load(); f != nil {
		return fmt.Errorf("%w: create topic %s refused: %v", ErrStorage, name, f.err)
	}
	if _, ok := s.topics[name]; ok {
		return fmt.Errorf("%w: %s", ErrTopicExists, name)
	}
	if err := s.checkPartitionCap(name, partitions); err != nil {
		return err
	}
	ps := make([]*Partition, partitions)
	for i := range ps {
		dir := partitionDir(s.dir, name, int32(i))
		_, statErr := os.Lstat(dir)
		p, err := openPartition(dir, name, int32(i), &s.cfg, false)
		if err != nil {
			// Remove everything this creation made, so neither this
			// broker nor the next start finds half a topic.
			for _, q := range ps[:i] {
				_ = q.shutdown(false)
				_ = os.RemoveAll(q.dir)
			}
			if errors.Is(statErr, os.ErrNotExist) {
				_ = os.RemoveAll(dir)
			}
			_ = syncDir(s.dir)
			return fmt.Errorf("create topic %s: %w (nothing of it was kept)", name, err)
		}
		if s.cfg.MaxOpenSegmentFiles >= 0 && 2*i >= s.cfg.MaxOpenSegmentFiles { // 2 files each
			p.hibernate() // fresh and idle: the open-file cap holds during creation too
		}
		ps[i] = p
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("create topic %s: sync data directory: %w", name, err)
	}
	s.topics[name] = ps
	return nil
}

// DeleteTopic removes a topic and its files. Outstanding ReadResults keep
// their files readable until released.
func (s *Store) DeleteTopic(name string) error {
	s.mu.Lock()
	ps, ok := s.topics[name]
	delete(s.topics, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: topic %s", ErrUnknownTopicOrPartition, name)
	}
	var errs []error
	for _, p := range ps {
		_ = p.shutdown(false)
		gone := p.dir + deletedSuffix
		if err := os.Rename(p.dir, gone); err != nil {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", name, err))
			continue
		}
		if err := os.RemoveAll(gone); err != nil {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Topics returns every topic's partition count.
func (s *Store) Topics() map[string]int32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int32, len(s.topics))
	for t, ps := range s.topics {
		out[t] = int32(len(ps))
	}
	return out
}

// TopicNames returns the topic names, sorted.
func (s *Store) TopicNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.topics))
	for t := range s.topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Partition returns partition p of topic.
func (s *Store) Partition(topic string, p int32) (*Partition, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ps, ok := s.topics[topic]
	if !ok || p < 0 || int(p) >= len(ps) {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownTopicOrPartition, topic, p)
	}
	return ps[p], nil
}

func (s *Store) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Sync forces every partition's active segment to disk.
func (s *Store) Sync() error {
	var errs []error
	for _, p := range s.partitions() {
		if err := p.sync(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close syncs and seals every partition, marks the shutdown clean and
// releases the directory lock. Call it once outstanding reads are
// released; later calls return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	var errs []error
	for _, p := range s.partitions() {
		if err := p.shutdown(true); err != nil {
			errs = append(errs, err)
		}
	}
	if f := s.lost.Load(); f != nil {
		errs = append(errs, f.err) // no clean marker in a directory that is not ours
	}
	if len(errs) == 0 {
		if err := os.WriteFile(filepath.Join(s.dir, cleanMarker), nil, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write clean-shutdown marker: %w", err))
		} else if err := syncDir(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("sync data directory %s: %w", s.dir, err))
		}
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release lock of %s: %w", s.dir, err))
	}
	_ = s.pathLock.release()
	return errors.Join(errs...)
}
