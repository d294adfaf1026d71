package main

import (
	"os"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := "#ifndef _ASM_UNISTD_64_H\n#define __NR_read 0\n#define __NR_write 1\n#define __NR_alias __NR_read\n#define __NR_exit_group 231\n"
	got, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{0: "read", 1: "write", 231: "exit_group"}
	if len(got) != len(want) {
		t.Fatalf("parse = %v, want %v", got, want)
	}
	for nr, name := range want {
		if got[nr] != name {
			t.Errorf("number %d = %q, want %q", nr, got[nr], name)
		}
	}
	if _, err := parse(strings.NewReader("#define __NR_a 1\n#define __NR_b 1\n")); err == nil {
		t.Error("two names for one number accepted")
	}
	if _, err := parse(strings.NewReader("nothing here\n")); err == nil {
		t.Error("a header without syscalls accepted")
	}
}

// TestCommittedTable regenerates probes' amd64 table from this machine's
// header and compares it with the committed file: a table edited by hand,
// or generated from other headers, shows up here.
func TestCommittedTable(t *testing.T) {
	const header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
	f, err := os.Open(header)
	if err != nil {
		t.Skipf("needs the Linux UAPI headers (%v): apt-get install linux-libc-dev", err)
	}
	defer f.Close()
	names, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	src, err := generate("amd64", header, names)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../probes/ebpf_sysnames_amd64.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(src) != string(committed) {
		t.Errorf("probes/ebpf_sysnames_amd64.go differs from what %s generates: run go generate ./probes", header)
	}
}
