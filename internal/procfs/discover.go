package procfs

import (
	"fmt"
	"os"
)

// CheckProcess returns nil when pid is a live process (a thread group
// leader), else an error that says what pid is and what to do.
func CheckProcess(pid int) error {
	st, err := Process(pid).Status()
	if err != nil || st.Exited() {
		return fmt.Errorf("no such process: %d (check the pid with ps)", pid)
	}
	if st.Tgid != pid {
		return fmt.Errorf("%d is a thread of process %d, not a process: use --pid %d", pid, st.Tgid, st.Tgid)
	}
	return nil
}

// ProcessesNamed lists the live processes whose command name is name
// (compared on the kernel's CommLen characters), in ascending order,
// leaving out this process.
func ProcessesNamed(name string) ([]int, error) {
	if len(name) > CommLen {
		name = name[:CommLen]
	}
	all, err := Pids()
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, pid := range all {
		if pid == self {
			continue
		}
		d := Process(pid)
		if comm, err := d.Comm(); err != nil || comm != name || !d.Alive() {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
