package probes

// The BPF objects are built from bpf/*.bpf.c by bpf2go and committed, so a
// clone builds without clang; `make generate` rebuilds them (needs clang,
// llvm-strip and the headers in bpf/headers). x86_64 only: the programs use
// x86_64 syscall numbers and pt_regs.

//go:generate go tool bpf2go -tags linux -target amd64 -cc clang -type fd_class -type sys_index -type mmsg_limits -type slot_state syscalls ../bpf/syscalls.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang sched ../bpf/sched.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang faults ../bpf/faults.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang -type fd_class iouring ../bpf/iouring.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang follow ../bpf/follow.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror -mcpu=v3
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang floor ../bpf/floor.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -target amd64 -cc clang lowcost ../bpf/lowcost.bpf.c -- -I../bpf/headers -O2 -g -Wall -Werror

// The syscall-name table, from the UAPI header that numbers the syscalls.
//go:generate go run ../internal/gensysnames -arch amd64 -header /usr/include/x86_64-linux-gnu/asm/unistd_64.h -o ebpf_sysnames_amd64.go
