package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// rawListener is a blocking listening socket outside Go's network poller.
// Its accept loop runs on a locked OS thread: a connection costs accept4
// and, if a limit refuses it, one close, with no epoll registration, dup or
// fcntl. That keeps the kernel's accept queue short under a flood, so a
// well-behaved client queued behind thousands of refused ones still gets
// in quickly.
type rawListener struct {
	fd   int
	addr string // resolved host:port
	path string // transfer path of its connections
	tls  *tls.Config
}

// listenRaw binds addr ("host:port", port 0 picks one) and listens.
func listenRaw(addr string) (*rawListener, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		ip = netip.IPv6Unspecified()
	}
	ip = ip.Unmap()
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: ta.Port, Addr: ip.As16()})
	if ip.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: ta.Port, Addr: ip.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (*rawListener, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	// The kernel caps the backlog at net.core.somaxconn.
	if err := unix.Listen(fd, 65535); err != nil {
		return fail("listen", err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return &rawListener{fd: fd, addr: sockaddrString(local)}, nil
}

// sockaddrString formats an AF_INET or AF_INET6 address as host:port.
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
	}
	return "unknown"
}

// wake makes a blocked accept4 return (EINVAL), for Shutdown.
func (l *rawListener) wake() { _ = unix.Shutdown(l.fd, unix.SHUT_RDWR) }

// acceptLoop accepts until Shutdown, on its own locked thread.
func (s *Server) acceptLoop(l *rawListener) {
	runtime.LockOSThread() // never unlocked: the thread ends with the loop
	defer s.wg.Done()
	defer unix.Close(l.fd)
	var backoff time.Duration
	for {
		fd, sa, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
		select {
		case <-s.closing:
			if err == nil {
				unix.Close(fd)
			}
			return
		default:
		}
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			// Out of file descriptors and the like: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.limitLog.logf(s.logf, "accept", "accept on %s: %v (retrying in %v; raise the open file limit with ulimit -n, or lower --max-connections)", l.addr, err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c, err := s.adopt(fd, sockaddrString(sa), l)
		if err != nil {
			s.logf("%v", err)
			continue
		}
		if c != nil {
			go c.serve()
		}
	}
}

// adopt admits an accepted blocking socket as a connection, or closes it
// when a limit refuses it (nil, nil) or the server is shutting down.
func (s *Server) adopt(fd int, peer string, l *rawListener) (*conn, error) {
	ip := peerIP(peer)
	if err := s.adm.admit(ip, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP); err != nil {
		s.counts.refused.Add(1)
		s.limitLog.logf(s.logf, "connections", "refused connection from %s: %v", peer, err)
		unix.Close(fd)
		return nil, nil
	}
	c, err := s.setup(fd, peer, ip, l)
	if err != nil {
		unix.Close(fd)
	}
	if c == nil {
		s.adm.leave(ip)
	}
	return c, err
}

func (s *Server) setup(fd int, peer, ip string, l *rawListener) (*conn, error) {
	localSA, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("connection from %s: getsockname: %v", peer, err)
	}
	// Go's net package sets TCP_NODELAY on every accepted connection, and
	// Kafka brokers do too; accept4 does not. Without it Nagle holds each
	// response's last partial segment until the consumer ACKs, which cut
	// sendfile and splice through the broker to ~0.7 of their raw loop.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, fmt.Errorf("connection from %s: set TCP_NODELAY: %v", peer, err)
	}
	if cc := s.cfg.Congestion; cc != "" {
		if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc); err != nil {
			return nil, fmt.Errorf("connection from %s: set TCP congestion control %q: %v (see net.ipv4.tcp_allowed_congestion_control)", peer, cc, err)
		}
	}
	if err := setRecvTimeout(fd, s.rcvTimeout); err != nil {
		return nil, fmt.Errorf("connection from %s: set SO_RCVTIMEO: %v", peer, err)
	}
	c := &conn{srv: s, fd: fd, peer: peer, ip: ip, local: sockaddrString(localSA), listener: l.addr, pathName: l.path, tlsCfg: l.tls}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("shutting down")
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c, nil
}
