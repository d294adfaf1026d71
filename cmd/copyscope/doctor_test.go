package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// doctorJSONKeys are the top-level keys of doctor --json.
func doctorJSONKeys() []string {
	return []string{"kernel", "checks", "tracepoints", "metrics", "ebpf_possible", "mode"}
}

func checkDoctorJSON(t *testing.T, out []byte) map[string]any {
	t.Helper()
	var rep map[string]any
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("doctor --json is not JSON: %v\n%s", err, out)
	}
	for _, k := range doctorJSONKeys() {
		if _, ok := rep[k]; !ok {
			t.Errorf("doctor --json lacks %q", k)
		}
	}
	tps, _ := rep["tracepoints"].([]any)
	if len(tps) == 0 {
		t.Fatal("no tracepoints in the report")
	}
	for _, x := range tps {
		tp := x.(map[string]any)
		for _, k := range []string{"group", "event", "attach", "required", "exists", "status", "feeds"} {
			if _, ok := tp[k]; !ok {
				t.Errorf("tracepoint %v lacks %q", tp, k)
			}
		}
	}
	for _, x := range rep["metrics"].([]any) {
		m := x.(map[string]any)
		if s := m["status"]; s != "exact" && s != "estimated" && s != "missing" {
			t.Errorf("metric %v: status %v", m, s)
		}
	}
	return rep
}

// TestDoctorJSON runs doctor --json in this process.
func TestDoctorJSON(t *testing.T) {
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs([]string{"doctor", "--json"})
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	rep := checkDoctorJSON(t, out.Bytes())
	possible := rep["ebpf_possible"] == true
	if possible != (err == nil) || (!possible && exitCode(err) != 2) {
		t.Errorf("ebpf_possible %v but doctor returned %v (exit %d): want nil when possible, exit 2 when not", possible, err, exitCode(err))
	}
	if os.Geteuid() == 0 && !possible {
		t.Logf("as root eBPF mode is impossible here: %v", rep["why"])
	}
}

// TestDoctorUnprivileged runs the doctor as nobody: eBPF mode impossible,
// exit status 2, fixes given, the table printed.
func TestDoctorUnprivileged(t *testing.T) {
	setpriv := setprivOrSkip(t)
	bin := nobodyBinary(t)
	drop := append(nobodyArgs(), bin, "doctor")
	out, err := exec.Command(setpriv, append(drop, "--json")...).Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("unprivileged doctor --json: %v, want exit status 2\n%s", err, out)
	}
	rep := checkDoctorJSON(t, out)
	if rep["ebpf_possible"] != false || rep["mode"] != "proc" || !strings.Contains(rep["why"].(string), "root") {
		t.Errorf("unprivileged report: ebpf_possible %v, mode %v, why %v; want false, proc and a fix naming root", rep["ebpf_possible"], rep["mode"], rep["why"])
	}
	table, _ := exec.Command(setpriv, drop...).Output()
	for _, want := range []string{"CHECK", "TRACEPOINT", "METRIC", "capabilities", "FAIL", "estimated (proc", "fix: run as root"} {
		if !bytes.Contains(table, []byte(want)) {
			t.Errorf("unprivileged doctor table lacks %q:\n%s", want, table)
		}
	}
}

// setprivOrSkip returns setpriv's path, or skips saying what is missing.
func setprivOrSkip(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dropping to an unprivileged user needs root: run as root")
	}
	p, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	return p
}

// nobodyArgs are setpriv's arguments to run as nobody without capabilities.
func nobodyArgs() []string {
	return []string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}
}

// nobodyBinary builds copyscope where the user nobody can run it.
func nobodyBinary(t *testing.T) string {
	t.Helper()
	// nobody cannot enter t.TempDir() (mode 0700 under a 0700 parent):
	// copy the binary into a directory of its own that it can.
	dir, err := os.MkdirTemp("", "copyscope-doctor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(buildBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "copyscope")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
