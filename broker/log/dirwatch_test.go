package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines collects a store's log lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) logf(format string, args ...any) {
	l.mu.Lock()
	l.l = append(l.l, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *lines) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.l {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestDataDirLost: when the data directory is removed, or replaced by
// another one, while the store runs, appends are refused with ErrStorage
// and a log line says why; with FsyncAlways not a single append into the
// deleted files is acknowledged. A second store on the same path is
// refused while the first runs, though the flock-ed file went with the
// old directory.
func TestDataDirLost(t *testing.T) {
	cases := []struct {
		name   string
		fsync  FsyncPolicy
		damage func(t *testing.T, dir string)
		log    string
	}{
		{"removed, fsync always", FsyncAlways, func(t *testing.T, dir string) { os.RemoveAll(dir) }, "was removed"},
		{"removed, fsync interval", FsyncInterval, func(t *testing.T, dir string) { os.RemoveAll(dir) }, "was removed"},
		{"replaced, fsync interval", FsyncInterval, func(t *testing.T, dir string) {
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "was replaced"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			var logs lines
			cfg := testConfig()
			cfg.Fsync, cfg.Logf = tc.fsync, logs.logf
			s := openStore(t, dir, cfg)
			if err := s.CreateTopic("t", 1); err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, s, "t", 0)
			mustAppend(t, p, makeBatch(spec(1, "before")))
			tc.damage(t, dir)
			var acked int
			var err error
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if _, err = p.Append(makeBatch(spec(1, "after"))); err != nil {
					break
				}
				acked++
			}
			if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("append after the damage: %v (acked %d), want ErrStorage naming %s", err, acked, dir)
			}
			if tc.fsync == FsyncAlways && acked > 0 {
				t.Errorf("fsync always: %d appends into deleted files were acknowledged", acked)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !logs.has(tc.log) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !logs.has(tc.log) || !logs.has("produce is refused") {
				t.Errorf("no log line says the directory %s: %q", tc.log, logs.l)
			}
			if err := s.CreateTopic("new", 1); !errors.Is(err, ErrStorage) {
				t.Errorf("CreateTopic after the damage: %v, want ErrStorage", err)
			}
			// The path may be recreated; a second store must still wait.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir, testConfig())
			var le *lockedError
			if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.pid != strconv.Itoa(os.Getpid()) {
				t.Fatalf("second Open on %s while the first runs: %v, want ErrLocked naming pid %d", dir, err, os.Getpid())
			}
			if err := s.Close(); err == nil {
				t.Error("Close of a store whose directory was lost reported success")
			}
			if _, err := os.Stat(filepath.Join(dir, cleanMarker)); err == nil {
				t.Error("Close wrote a clean-shutdown marker into a directory that is not the store's")
			}
			s2 := openStore(t, dir, testConfig())
			s2.Close()
		})
	}
}

// TestPathLockSymlink: a second store reaching the same directory through
// a symlink is refused.
func TestPathLockSymlink(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	s := openStore(t, dir, testConfig())
	defer s.Close()
	link := filepath.Join(root, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, testConfig()); !errors.Is(err, ErrLocked) {
		t.Fatalf("Open through a symlink: %v, want ErrLocked", err)
	}
}
