package log

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// dirCheckInterval is how often the store checks that its data directory
// is still the one it opened.
const dirCheckInterval = 250 * time.Millisecond

// refusal is the error Append returns once f is recorded.
func (f *failure) refusal(partition string) error {
	if f.dirLost {
		return fmt.Errorf("%w: append to %s refused: %v", ErrStorage, partition, f.err)
	}
	return fmt.Errorf("%w: append to %s refused: an earlier sync failed (%v); restart the broker so recovery can truncate to durable data", ErrStorage, partition, f.err)
}

// dirLostError says what happened to the data directory and what to do.
func dirLostError(dir, what string) error {
	return fmt.Errorf("data directory %s %s while the broker runs: nothing written now would be found after a restart (stop the broker, restore or recreate the directory, start it again)", dir, what)
}

// checkDir compares the directory at s.dir with the one Open locked.
func (s *Store) checkDir() error {
	st, err := os.Stat(s.dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return dirLostError(s.dir, "was removed")
	case err != nil:
		return dirLostError(s.dir, fmt.Sprintf("cannot be checked (%v)", err))
	case !os.SameFile(st, s.dirInfo):
		return dirLostError(s.dir, "was replaced by another directory")
	}
	return nil
}

// dirLost refuses every later append and topic creation, once, and says so.
func (s *Store) dirLost(err error) {
	if !s.lost.CompareAndSwap(nil, &failure{err: err, dirLost: true}) {
		return
	}
	for _, p := range s.partitions() {
		p.failed.CompareAndSwap(nil, &failure{err: err, dirLost: true})
	}
	s.logf("%v; produce is refused (KAFKA_STORAGE_ERROR)", err)
}

// checkLinked fails if the segment file was unlinked (its directory was
// removed): an fsync into a deleted file makes nothing durable. It runs
// after every fdatasync with FsyncAlways, so no such append is acknowledged.
func (s *segment) checkLinked() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.log.Fd()), &st); err != nil {
		return fmt.Errorf("fstat %s: %w", s.logPath, err)
	}
	if st.Nlink == 0 {
		return fmt.Errorf("segment %s was deleted", s.logPath)
	}
	return nil
}

// pathLock holds an abstract unix socket named after the data directory's
// canonical path. The flock on dir/.lock belongs to one directory inode: a
// directory removed and recreated under the same path would let a second
// broker in while the first still runs. The socket's name is the path, so
// a second broker on that path is refused until the first exits (the
// kernel frees the name with the process, so it never goes stale). It
// covers processes in the same network namespace.
type pathLock struct{ fd int }

func lockPath(dir string) (*pathLock, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve data directory %s: %w", dir, err)
	}
	sum := sha256.Sum256([]byte(abs))
	addr := &unix.SockaddrUnix{Name: "@copyscope-data/" + hex.EncodeToString(sum[:16])}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: socket: %w", dir, err)
	}
	if err := unix.Bind(fd, addr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, &lockedError{dir: dir, pid: pathLockHolder(addr)}
		}
		return nil, fmt.Errorf("lock data directory %s: bind: %w", dir, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock data directory %s: listen: %w", dir, err)
	}
	return &pathLock{fd: fd}, nil
}

// pathLockHolder asks the kernel which process listens on addr.
func pathLockHolder(addr *unix.SockaddrUnix) string {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "unknown"
	}
	defer unix.Close(fd)
	if unix.Connect(fd, addr) != nil {
		return "unknown"
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return "unknown"
	}
	return strconv.Itoa(int(cred.Pid))
}

func (l *pathLock) release() error { return unix.Close(l.fd) }

// DirLost reports whether the data directory was removed or replaced
// while the store ran (appends are refused from then on).
func (s *Store) DirLost() bool { return s.lost.Load() != nil }
