//go:build linux && amd64

package probes

import (
	"strconv"
	"strings"

	"github.com/copyscope/copyscope/internal/uring"

	"github.com/copyscope/copyscope/internal/procfs"
)

// transferPaths says whether the kernel can run the transfer paths that
// need more than plain syscalls: io_uring (uring, uring-splice, uring-zc)
// and the kernel's TLS ULP (kTLS: ktls-sendfile, ktls-splice).
func (d *diagnosis) transferPaths() {
	if err := uring.Available(); err != nil {
		d.add(Check{Name: "io_uring", Status: StatusWarn, Value: err.Error() + ": the uring, uring-splice and uring-zc paths are skipped",
			Fix: "sysctl kernel.io_uring_disabled=0, or allow io_uring_setup in the seccomp profile"})
	} else {
		d.add(Check{Name: "io_uring", Status: StatusOK, Value: "a ring can be set up: the uring, uring-splice and uring-zc paths run (their ops are counted by the io_uring tracepoints)"})
	}
	d.add(ulpCheck(readULPs()))
}

// readULPs is the kernel's list of TCP upper-layer protocols.
func readULPs() (string, error) {
	return procfs.Sysctl("net/ipv4/tcp_available_ulp")
}

// ulpCheck says whether kTLS can run, from tcp_available_ulp.
func ulpCheck(ulps string, err error) Check {
	if err != nil {
		return Check{Name: "kernel TLS (tls ULP)", Status: StatusInfo, Value: "tcp_available_ulp unreadable: " + err.Error()}
	}
	for _, u := range strings.Fields(ulps) {
		if u == "tls" {
			return Check{Name: "kernel TLS (tls ULP)", Status: StatusOK, Value: "tcp_available_ulp lists tls: the kernel can encrypt sendfile and splice (kTLS)"}
		}
	}
	return Check{Name: "kernel TLS (tls ULP)", Status: StatusInfo,
		Value: "tcp_available_ulp is " + strconv.Quote(ulps) + ", without tls: no kTLS here; TLS listeners use the tls path (crypto/tls in user space, 2 copies per byte)",
		Fix:   "modprobe tls (a kernel built with CONFIG_TLS)"}
}
