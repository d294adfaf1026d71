// Command gensysnames writes the syscall-name table of one architecture
// (probes/ebpf_sysnames_<arch>.go) from the Linux UAPI header that numbers
// its syscalls, so the table is generated, not typed. probes/gen.go runs
// it through go generate:
//
//	go run ../internal/gensysnames -arch amd64 -header /usr/include/x86_64-linux-gnu/asm/unistd_64.h -o ebpf_sysnames_amd64.go
//
// The header comes with the distribution's Linux headers (Debian:
// linux-libc-dev, which libbpf-dev pulls in).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	arch := flag.String("arch", "amd64", "GOARCH the table is for")
	header := flag.String("header", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "UAPI header with one #define __NR_<name> <number> per syscall")
	out := flag.String("o", "", "output file (default: standard output)")
	flag.Parse()
	if err := run(*arch, *header, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gensysnames:", err)
		os.Exit(1)
	}
}

func run(arch, header, out string) error {
	f, err := os.Open(header)
	if err != nil {
		return fmt.Errorf("%w (install the Linux UAPI headers: apt-get install linux-libc-dev)", err)
	}
	defer f.Close()
	names, err := parse(f)
	if err != nil {
		return fmt.Errorf("parse %s: %w", header, err)
	}
	src, err := generate(arch, header, names)
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(src)
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

// parse reads "#define __NR_<name> <number>" lines into number -> name.
func parse(r io.Reader) (map[int]string, error) {
	names := map[int]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "#define" || !strings.HasPrefix(f[1], "__NR_") {
			continue
		}
		nr, err := strconv.Atoi(f[2])
		if err != nil {
			continue // an alias defined as another macro
		}
		name := strings.TrimPrefix(f[1], "__NR_")
		if prev, ok := names[nr]; ok && prev != name {
			return nil, fmt.Errorf("number %d is both %s and %s", nr, prev, name)
		}
		names[nr] = name
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no #define __NR_ lines")
	}
	return names, nil
}

// generate renders the Go file: a switch from number to name.
func generate(arch, header string, names map[int]string) ([]byte, error) {
	nrs := make([]int, 0, len(names))
	for nr := range names {
		nrs = append(nrs, nr)
	}
	sort.Ints(nrs)
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated from %s (Linux UAPI headers on the build machine); DO NOT EDIT.\n\n", header)
	fmt.Fprintf(&b, "//go:build linux && %s\n\npackage probes\n\n", arch)
	fmt.Fprintf(&b, "// %sSyscallName returns the name of an %s syscall number, or \"\"\n", arch, archName(arch))
	fmt.Fprintf(&b, "// for a number newer than the headers this was generated from. One case\n")
	fmt.Fprintf(&b, "// per syscall: a generated table, long by nature.\n")
	fmt.Fprintf(&b, "func %sSyscallName(nr uint32) string {\n\tswitch nr {\n", arch)
	for _, nr := range nrs {
		fmt.Fprintf(&b, "\tcase %d:\n\t\treturn %q\n", nr, names[nr])
	}
	b.WriteString("\t}\n\treturn \"\"\n}\n")
	return format.Source(b.Bytes())
}

// archName is the kernel's name of a GOARCH, for the doc comment.
func archName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "arm64"
	}
	return goarch
}
