package transfer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// chunkPipe is the pipe a splice path moves pages through (splice and
// uring-splice embed it), sized to the chunk when the kernel allows.
type chunkPipe struct {
	pr, pw int // pipe ends, -1 until first use
	step   int // bytes per file->pipe splice: the chunk, or less if the pipe is smaller
	want   int // the size asked for: the chunk
	path   string
	plg    *ledger
}

func (cp *chunkPipe) initPipe(path string, chunk int, lg *ledger) {
	*cp = chunkPipe{pr: -1, pw: -1, want: chunk, path: path, plg: lg}
}

// openPipe creates the pipe and sizes it to the chunk (pipe2 + fcntl). If
// the kernel refuses (pipe-max-size for unprivileged users), it keeps the
// default size, splices in pipe-sized steps and notes the fallback.
func (cp *chunkPipe) openPipe() error {
	var fds [2]int
	cp.plg.call(scPipe2)
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("create %s pipe: %w (check the open-file limit)", cp.path, err)
	}
	cp.pr, cp.pw = fds[0], fds[1]
	cp.plg.call(scFcntl)
	size, err := unix.FcntlInt(uintptr(cp.pw), unix.F_SETPIPE_SZ, cp.want)
	if err != nil {
		cp.plg.call(scFcntl)
		if size, err = unix.FcntlInt(uintptr(cp.pw), unix.F_GETPIPE_SZ, 0); err != nil {
			cp.closePipe()
			return fmt.Errorf("read %s pipe size: %w", cp.path, err)
		}
		cp.plg.note(fmt.Sprintf("%s: pipe size %d denied (raise /proc/sys/fs/pipe-max-size or run as root); using %d-byte steps", cp.path, cp.want, size))
	}
	cp.step = min(cp.want, size)
	cp.plg.update(func(l *Ledger) { l.PipeSize = size })
	return nil
}

// closePipe closes both ends (a pipe that may hold bytes that never
// reached the socket is closed, and the next Send opens a fresh one).
func (cp *chunkPipe) closePipe() error {
	var first error
	for _, fd := range []int{cp.pr, cp.pw} {
		if fd < 0 {
			continue
		}
		cp.plg.call(scClose)
		if err := unix.Close(fd); err != nil && first == nil {
			first = fmt.Errorf("close %s pipe fd %d: %w", cp.path, fd, err)
		}
	}
	cp.pr, cp.pw = -1, -1
	return first
}
