//go:build linux && amd64

package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"
)

// Floor is an attached empty sys_exit program (bpf/floor.bpf.c): what any
// tool that counts syscalls with tracepoints costs on this kernel, before
// it counts anything. Close detaches it.
type Floor struct {
	objs floorObjects
	link link.Link
}

// AttachFloor loads and attaches the empty sys_exit program. Like the
// probes it needs root (CAP_BPF and CAP_PERFMON) and kernel BTF.
func AttachFloor() (*Floor, error) {
	f := &Floor{}
	if err := loadFloorObjects(&f.objs, nil); err != nil {
		return nil, fmt.Errorf("load the empty sys_exit program: %w (needs root with CAP_BPF and CAP_PERFMON and kernel BTF; run copyscope doctor)", err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: f.objs.FloorSysExit})
	if err != nil {
		f.objs.Close()
		return nil, fmt.Errorf("attach the empty program to tp_btf/sys_exit: %w", err)
	}
	f.link = l
	return f, nil
}

// Close detaches and unloads the program.
func (f *Floor) Close() error {
	return errors.Join(f.link.Close(), f.objs.Close())
}
