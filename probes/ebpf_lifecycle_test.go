//go:build linux && amd64

package probes

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

const lifecycleEnv = "COPYSCOPE_EBPF_LIFECYCLE_CHILD"

// TestEBPFLifecycleChild is the child process of TestEBPFDetachOnExit: it
// attaches every program, prints their ids and map ids, then leaves the way
// the parent asked. Run on its own it only says so and skips.
func TestEBPFLifecycleChild(t *testing.T) {
	mode := os.Getenv(lifecycleEnv)
	if mode == "" {
		t.Skip("helper process of TestEBPFDetachOnExit; it runs only as that test's child")
	}
	pr, err := OpenEBPF(EBPFOptions{})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	if err := pr.AddProcesses(os.Getpid()); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	p := pr.(*ebpfProbe)
	var ids []string
	for _, c := range p.colls {
		for _, prog := range c.Programs {
			info, err := prog.Info()
			if err != nil {
				fmt.Printf("error program info: %v\n", err)
				os.Exit(3)
			}
			id, _ := info.ID()
			ids = append(ids, "p"+strconv.Itoa(int(id)))
		}
		for _, m := range c.Maps {
			info, err := m.Info()
			if err != nil {
				fmt.Printf("error map info: %v\n", err)
				os.Exit(3)
			}
			id, _ := info.ID()
			ids = append(ids, "m"+strconv.Itoa(int(id)))
		}
	}
	fmt.Printf("ids %s\n", strings.Join(ids, " "))
	os.Stdout.Sync()
	switch mode {
	case "exit": // a normal exit that never calls Close
		os.Exit(0)
	case "close":
		if err := pr.Close(); err != nil {
			fmt.Printf("error close: %v\n", err)
			os.Exit(3)
		}
		os.Exit(0)
	case "panic":
		panic("copyscope lifecycle test: deliberate panic with programs attached")
	default: // wait to be signalled; bounded
		time.Sleep(time.Minute)
		os.Exit(4)
	}
}

// TestEBPFDetachOnExit checks that no copyscope program or map outlives its
// process, whichever way the process ends: the programs are attached
// through bpf_link fds that the kernel releases with the process.
func TestEBPFDetachOnExit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("eBPF probes need root (CAP_BPF + CAP_PERFMON): run the probes tests as root")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skipf("eBPF probes need kernel BTF: %v", err)
	}
	bpftool, _ := exec.LookPath("bpftool")
	if bpftool == "" {
		t.Log("bpftool not installed: checking by program id through the bpf syscall only")
	}
	for _, tc := range []struct {
		mode string
		sig  syscall.Signal
	}{
		{"exit", 0}, {"close", 0}, {"panic", 0},
		{"signal", syscall.SIGINT}, {"signal", syscall.SIGTERM}, {"signal", syscall.SIGKILL},
	} {
		name := tc.mode
		if tc.sig != 0 {
			name = tc.sig.String()
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestEBPFLifecycleChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), lifecycleEnv+"="+tc.mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var progs, maps []uint32
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "error ") {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child: %s", line)
				}
				if rest, ok := strings.CutPrefix(line, "ids "); ok {
					for _, f := range strings.Fields(rest) {
						id, _ := strconv.ParseUint(f[1:], 10, 32)
						if f[0] == 'p' {
							progs = append(progs, uint32(id))
						} else {
							maps = append(maps, uint32(id))
						}
					}
					break
				}
			}
			if len(progs) == 0 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child printed no program ids; stderr: %s", stderr.String())
			}
			for _, id := range progs {
				if !progExists(id) {
					t.Fatalf("program %d of the live child does not exist", id)
				}
			}
			if tc.sig != 0 {
				if err := cmd.Process.Signal(tc.sig); err != nil {
					t.Fatal(err)
				}
			}
			go func() { // drain so the child never blocks on a full pipe
				for sc.Scan() {
				}
			}()
			werr := cmd.Wait()
			t.Logf("child %s: %v", name, werr)
			switch {
			case tc.mode == "panic" && !strings.Contains(stderr.String(), "deliberate panic"):
				t.Errorf("child did not panic: %v; stderr: %s", werr, stderr.String())
			case tc.sig != 0 && werr == nil:
				t.Errorf("child exited cleanly after %v", tc.sig)
			}
			// The kernel frees programs and maps after an RCU grace period.
			deadline := time.Now().Add(5 * time.Second)
			var left []string
			for {
				left = left[:0]
				for _, id := range progs {
					if progExists(id) {
						left = append(left, fmt.Sprintf("program %d", id))
					}
				}
				for _, id := range maps {
					if mapExists(id) {
						left = append(left, fmt.Sprintf("map %d", id))
					}
				}
				if len(left) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Errorf("still loaded after the child ended (%s): %s", name, strings.Join(left, ", "))
			}
			if bpftool != "" {
				listing, err := exec.Command(bpftool, "prog", "show").CombinedOutput()
				if err != nil {
					t.Fatalf("bpftool prog show: %v: %s", err, listing)
				}
				for _, id := range progs {
					for _, line := range strings.Split(string(listing), "\n") {
						if strings.HasPrefix(line, strconv.Itoa(int(id))+":") {
							t.Errorf("bpftool prog show still lists %q", line)
						}
					}
				}
			}
		})
	}
}

func progExists(id uint32) bool {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	p.Close()
	return true
}

func mapExists(id uint32) bool {
	m, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	m.Close()
	return true
}
