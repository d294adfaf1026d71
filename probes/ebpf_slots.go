//go:build linux && amd64

package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/cilium/ebpf"

	"github.com/copyscope/copyscope/internal/procfs"
	"github.com/copyscope/copyscope/metrics"
)

// Per-thread syscall counters live in slots of the mmap'able thread_stats
// array (bpf/syscalls.bpf.c): a watched thread claims a free slot at its
// first syscall, the kernel marks it exited when the thread exits, and the
// reader keeps the final counts and returns the slot to free_slots.

// Slot states and the sys[] indexes past the syscall numbers, as bpf2go
// emits them from bpf/syscalls.bpf.c's enums.
const (
	slotFree   = syscallsSlotStateSLOT_FREE
	slotExited = syscallsSlotStateSLOT_EXITED
	sysOther   = int(syscallsSysIndexSYS_OTHER)
	sysNone    = int(syscallsSysIndexSYS_NONE)
)

// The fd classes index every by-class array: C's enum fd_class and
// metrics.FdClass must agree. Each line fails to compile (index out of
// range, or constant overflow) when they drift apart.
var (
	_ = [1]struct{}{}[uint32(syscallsFdClassCLASS_FILE)-uint32(metrics.ClassFile)]
	_ = [1]struct{}{}[uint32(syscallsFdClassCLASS_SOCKET)-uint32(metrics.ClassSocket)]
	_ = [1]struct{}{}[uint32(syscallsFdClassCLASS_PIPE)-uint32(metrics.ClassPipe)]
	_ = [1]struct{}{}[uint32(syscallsFdClassCLASS_OTHER)-uint32(metrics.ClassOther)]
	_ = [1]struct{}{}[uint32(syscallsFdClassNUM_CLASSES)-uint32(metrics.NumClasses)]
	_ = [1]struct{}{}[uint32(iouringFdClassNUM_CLASSES)-uint32(syscallsFdClassNUM_CLASSES)]
)

// slotSize is sizeof(struct thread_stats).
var slotSize = binary.Size(syscallsThreadStats{})

// slotTable reads and recycles the slots.
type slotTable struct {
	stats, links, free *ebpf.Map
	mem                *ebpf.Memory
	n                  int
	buf                []byte
}

// sizeSlotMaps sets the slot and thread-id arrays' sizes in one object
// before loading: n slots (n <= 0: as compiled, MAX_SLOTS), and one link
// per thread id the kernel can hand out. Every object that declares them
// (bpf/headers/slots.h) is sized alike, so they can share the syscalls
// object's maps.
func sizeSlotMaps(obj string, spec *ebpf.CollectionSpec, n int) error {
	for _, name := range []string{syscallsMapThreadStats, syscallsMapFreeSlots} {
		m := spec.Maps[name]
		if m == nil {
			if obj != "syscalls" {
				continue // an object without slots
			}
			return fmt.Errorf("BPF object syscalls has no map %s (run make generate)", name)
		}
		if n > 0 {
			m.MaxEntries = uint32(n)
		}
	}
	if m := spec.Maps[syscallsMapTidSlots]; m != nil {
		// Compiled for PID_MAX_LIMIT ids; the kernel hands out fewer.
		m.MaxEntries = uint32(pidMax(int(m.MaxEntries)))
	}
	return nil
}

// pidMax is the kernel's pid_max (thread ids are below it), or limit, the
// largest it can be, when that cannot be read.
func pidMax(limit int) int {
	n, err := procfs.PidMax()
	if err != nil || n <= 0 || n > limit {
		return limit
	}
	return n
}

// newSlotTable maps the loaded slot array and fills the free list.
func newSlotTable(coll *ebpf.Collection) (*slotTable, error) {
	t := &slotTable{stats: coll.Maps[syscallsMapThreadStats], links: coll.Maps[syscallsMapTidSlots], free: coll.Maps[syscallsMapFreeSlots]}
	if t.stats == nil || t.links == nil || t.free == nil {
		return nil, errors.New("BPF object syscalls lacks its slot maps (run make generate)")
	}
	if int(t.stats.ValueSize()) != slotSize {
		return nil, fmt.Errorf("thread_stats value is %d bytes, Go expects %d (run make generate)", t.stats.ValueSize(), slotSize)
	}
	mem, err := t.stats.Memory()
	if err != nil {
		return nil, fmt.Errorf("map thread_stats into memory: %w", err)
	}
	t.mem, t.n, t.buf = mem, int(t.stats.MaxEntries()), make([]byte, slotSize)
	for i := 0; i < t.n; i++ {
		if err := t.release(uint32(i)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// maps are the slot maps by name, for the other objects that declare them
// (the low-cost programs count into the same slots).
func (t *slotTable) maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{syscallsMapThreadStats: t.stats, syscallsMapTidSlots: t.links, syscallsMapFreeSlots: t.free}
}

// header reads a slot's state and owner without copying the counters.
func (t *slotTable) header(i int) (state syscallsSlotState, tid uint32, err error) {
	var h [8]byte
	if _, err := t.mem.ReadAt(h[:], int64(i*slotSize)); err != nil {
		return 0, 0, fmt.Errorf("read slot %d: %w", i, err)
	}
	return syscallsSlotState(binary.LittleEndian.Uint32(h[0:])), binary.LittleEndian.Uint32(h[4:]), nil
}

// read copies one slot.
func (t *slotTable) read(i int, v *syscallsThreadStats) error {
	if _, err := t.mem.ReadAt(t.buf, int64(i*slotSize)); err != nil {
		return fmt.Errorf("read slot %d: %w", i, err)
	}
	if _, err := binary.Decode(t.buf, binary.LittleEndian, v); err != nil {
		return fmt.Errorf("decode slot %d: %w", i, err)
	}
	return nil
}

// release marks a slot free and returns it to the kernel's free list.
func (t *slotTable) release(i uint32) error {
	var free [8]byte // state SLOT_FREE, tid 0
	if _, err := t.mem.WriteAt(free[:], int64(int(i)*slotSize)); err != nil {
		return fmt.Errorf("free slot %d: %w", i, err)
	}
	if err := t.free.Update(nil, i, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("return slot %d to free_slots: %w", i, err)
	}
	return nil
}

// unlink stops the kernel from finding tid's slot, so the thread's next
// syscall claims a new one if it is still watched.
func (t *slotTable) unlink(tid uint32) error {
	if int(tid) >= int(t.links.MaxEntries()) {
		return nil
	}
	if err := t.links.Put(tid, uint32(0)); err != nil {
		return fmt.Errorf("unlink thread %d from its slot: %w", tid, err)
	}
	return nil
}

// each calls fn for every slot in use, with its state.
func (t *slotTable) each(fn func(slot int, state syscallsSlotState, v *syscallsThreadStats) error) error {
	var v syscallsThreadStats
	for i := 0; i < t.n; i++ {
		state, _, err := t.header(i)
		if err != nil {
			return err
		}
		if state == slotFree {
			continue
		}
		if err := t.read(i, &v); err != nil {
			return err
		}
		if err := fn(i, state, &v); err != nil {
			return err
		}
	}
	return nil
}

// addSlot adds one slot's syscall counts and bytes to c.
func addSlot(c *metrics.Counters, v *syscallsThreadStats, countOnExit bool) {
	for nr, n := range v.Sys {
		if n == 0 {
			continue
		}
		var name string
		switch nr {
		case sysNone:
			// orig_ax is -1 at return from rt_sigreturn (or from a
			// syscall seccomp or ptrace skipped).
			name = "syscall_-1"
			if countOnExit {
				name = "rt_sigreturn"
			}
		case sysOther:
			name = "syscall_other"
		default:
			name = amd64SyscallName(uint32(nr))
			if name == "" {
				name = "syscall_" + strconv.Itoa(nr)
			}
		}
		c.Syscalls += n
		if c.SyscallsByName == nil {
			c.SyscallsByName = map[string]uint64{}
		}
		c.SyscallsByName[name] += n
	}
	addIO(c, v.Io.ToUser, v.Io.FromUser, v.Io.Moved, v.Io.Delivered, v.Io.Received, v.Io.Zerocopy, v.Io.ZerocopyCopied)
}

func addIO(c *metrics.Counters, toUser, fromUser, moved [4]uint64, delivered, received, zc, zcCopied uint64) {
	for i := 0; i < int(metrics.NumClasses); i++ {
		c.CopiedToUser[i] += toUser[i]
		c.CopiedFromUser[i] += fromUser[i]
		c.MovedInKernel[i] += moved[i]
	}
	c.DeliveredBytes += delivered
	c.ReceivedBytes += received
	c.ZerocopyBytes += zc
	c.ZerocopyCopiedBytes += zcCopied
}

// exitedThread is what is kept of a thread whose slot was recycled.
type exitedThread struct {
	tgid     int
	comm     string
	port     int // local port of the socket it last moved data on (TrackPorts)
	counters metrics.Counters
	reported bool // given in a reading as exited, with these final counts
}

// harvest reads every slot in use into the reading (by tid). Slots of
// exited threads are folded into p.exited and recycled, so the slots never
// run out while threads come and go and totals never go backwards.
func (p *ebpfProbe) harvest(add func(tid uint32, f func(c *metrics.Counters))) error {
	return p.slots.each(func(slot int, state syscallsSlotState, v *syscallsThreadStats) error {
		tid := v.Tid
		p.kernelID[int(tid)] = kernelIdentity{tgid: int(v.Tgid), comm: cString(v.Comm[:]), port: int(v.Port)}
		if state != slotExited {
			// A live slot is a live thread: what is cached about an
			// exited thread that had this id is stale.
			if ti, ok := p.info[int(tid)]; ok && ti.exited {
				delete(p.info, int(tid))
			}
			add(tid, func(c *metrics.Counters) { addSlot(c, v, p.countOnExit) })
			return nil
		}
		e := p.exited[int(tid)]
		e.tgid, e.comm, e.port = int(v.Tgid), cString(v.Comm[:]), int(v.Port)
		addSlot(&e.counters, v, p.countOnExit)
		p.exited[int(tid)] = e
		return p.slots.release(uint32(slot))
	})
}

// forgetSlots unlinks the threads and recycles their slots.
func (p *ebpfProbe) forgetSlots(tids map[uint32]bool) error {
	var errs []error
	for tid := range tids {
		errs = append(errs, p.slots.unlink(tid))
		delete(p.exited, int(tid))
	}
	for i := 0; i < p.slots.n; i++ {
		state, tid, err := p.slots.header(i)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if state != slotFree && tids[tid] {
			errs = append(errs, p.slots.release(uint32(i)))
		}
	}
	return errors.Join(errs...)
}

// kernelIdentity is who a thread was at its first counted syscall.
type kernelIdentity struct {
	tgid int
	comm string
	port int // local port of the socket it last moved data on (TrackPorts)
}
