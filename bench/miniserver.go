package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/copyscope/copyscope/broker/transfer"
	"golang.org/x/sys/unix"
)

// miniServer serves Fetch v4 for one partition straight from the log over
// the transfer paths, one listener per path, each connection on its own
// locked thread with a blocking socket: the same threading as the kafka
// server, used until that server is wired in.
type miniServer struct {
	part  *log.Partition
	chunk int
	reg   *transfer.Registry
	lns   map[string]*sinkListener
	mu    sync.Mutex
	paths map[int]transfer.Path // by data thread id
	conns map[int]bool          // open sockets, shut down on stop
	wg    sync.WaitGroup
}

func startMiniServer(part *log.Partition, names []string, chunk int) (*miniServer, error) {
	s := &miniServer{part: part, chunk: chunk, reg: transfer.NewRegistry(), lns: map[string]*sinkListener{},
		paths: map[int]transfer.Path{}, conns: map[int]bool{}}
	for _, name := range names {
		ln, err := listenSink()
		if err != nil {
			s.stop()
			return nil, err
		}
		s.lns[name] = ln
		s.wg.Add(1)
		go s.accept(ln, name)
	}
	return s, nil
}

func (s *miniServer) addr(path string) (string, error) {
	ln, ok := s.lns[path]
	if !ok {
		return "", fmt.Errorf("no listener for path %q", path)
	}
	return ln.addr, nil
}

func (s *miniServer) registry() *transfer.Registry { return s.reg }

func (s *miniServer) ledger(tid int) *transfer.Ledger {
	s.mu.Lock()
	p := s.paths[tid]
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	l := p.Ledger()
	return &l
}

func (s *miniServer) stop() {
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Lock()
	for fd := range s.conns {
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *miniServer) accept(ln *sinkListener, name string) {
	defer s.wg.Done()
	for {
		fd, sa, err := unix.Accept4(ln.fd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return // listener shut down
		}
		peer := ""
		if in, ok := sa.(*unix.SockaddrInet4); ok {
			peer = fmt.Sprintf("%d.%d.%d.%d:%d", in.Addr[0], in.Addr[1], in.Addr[2], in.Addr[3], in.Port)
		}
		s.mu.Lock()
		s.conns[fd] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(fd, name, peer, ln.addr)
	}
}

// serve answers Fetch requests on a locked thread until the peer leaves.
func (s *miniServer) serve(fd int, name, peer, listener string) {
	defer s.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		s.mu.Lock()
		delete(s.conns, fd)
		s.mu.Unlock()
		unix.Close(fd)
	}()
	p, err := transfer.New(name, transfer.Options{Chunk: s.chunk})
	if err != nil {
		return
	}
	tid := unix.Gettid()
	s.mu.Lock()
	s.paths[tid] = p
	s.mu.Unlock()
	unregister := s.reg.Register(transfer.ConnInfo{TID: tid, Path: name, Peer: peer, Listener: listener})
	defer func() {
		unregister()
		p.Close() // before the socket closes: zerocopy reaps its completions
		s.mu.Lock()
		delete(s.paths, tid)
		s.mu.Unlock()
	}()
	var reads uint64
	req := make([]byte, 0, 4096)
	frame := make([]byte, 0, 256)
	for {
		var size [4]byte
		if err := readFull(fd, size[:], &reads); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > 1<<20 {
			return
		}
		req = req[:n]
		if err := readFull(fd, req, &reads); err != nil {
			return
		}
		f, err := parseFetchV4(req)
		if err != nil {
			return
		}
		res, rerr := s.part.Read(f.offset, f.maxBytes)
		errCode := int16(0)
		if errors.Is(rerr, log.ErrOffsetOutOfRange) {
			errCode = 1
		} else if rerr != nil {
			errCode = -1
		}
		var parts []transfer.Part
		frame, parts = fetchV4Response(frame, f, errCode, res)
		_, serr := p.Send(fd, parts)
		res.Release()
		if serr != nil {
			return
		}
	}
}

// fetchReq is the part of a Fetch v4 request the mini server uses.
type fetchReq struct {
	corrID   int32
	topic    string
	part     int32
	offset   int64
	maxBytes int32
}

func parseFetchV4(b []byte) (fetchReq, error) {
	var f fetchReq
	bad := fmt.Errorf("malformed fetch request (%d bytes)", len(b))
	if len(b) < 10 {
		return f, bad
	}
	if key, ver := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]); key != 1 || ver != fetchVersion {
		return f, fmt.Errorf("api %d v%d: the mini server answers Fetch v4 only", key, ver)
	}
	f.corrID = int32(binary.BigEndian.Uint32(b[4:]))
	cl := int(int16(binary.BigEndian.Uint16(b[8:])))
	b = b[10+max(cl, 0):]
	// replica, max wait, min bytes, max bytes, isolation, topic count
	if len(b) < 4+4+4+4+1+4+2 {
		return f, bad
	}
	f.maxBytes = int32(binary.BigEndian.Uint32(b[12:]))
	b = b[21:]
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl+4+4+8+4 {
		return f, bad
	}
	f.topic = string(b[2 : 2+tl])
	b = b[2+tl+4:]
	f.part = int32(binary.BigEndian.Uint32(b))
	f.offset = int64(binary.BigEndian.Uint64(b[4:]))
	if pm := int32(binary.BigEndian.Uint32(b[12:])); pm < f.maxBytes {
		f.maxBytes = pm
	}
	return f, nil
}

// fetchV4Response frames a Fetch v4 response around the read's slices.
func fetchV4Response(buf []byte, f fetchReq, errCode int16, res log.ReadResult) ([]byte, []transfer.Part) {
	var n int64
	for _, s := range res.Slices {
		n += s.Len
	}
	b := buf[:0]
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(f.corrID))
	b = binary.BigEndian.AppendUint32(b, 0) // throttle
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(f.topic)))
	b = append(b, f.topic...)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(f.part))
	b = binary.BigEndian.AppendUint16(b, uint16(errCode))
	b = binary.BigEndian.AppendUint64(b, uint64(res.HighWatermark))
	b = binary.BigEndian.AppendUint64(b, uint64(res.HighWatermark))
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // no aborted transactions
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	binary.BigEndian.PutUint32(b, uint32(int64(len(b))-4+n))
	parts := []transfer.Part{{Bytes: b}}
	for _, s := range res.Slices {
		parts = append(parts, transfer.Part{Span: transfer.Span{Fd: int(s.File.Fd()), Off: s.Pos, Len: s.Len}})
	}
	return b, parts
}

// startBroker starts the server the broker variant consumes from.
func startBroker(part *log.Partition, cfg Config) (fetchServer, error) {
	return startMiniServer(part, cfg.Paths, cfg.Chunk)
}
