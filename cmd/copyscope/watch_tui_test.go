package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWatchTUIInTmux runs watch on a terminal: the TUI shows the watched
// thread, q quits with status 0; when every process is gone the UI ends
// by itself and the exit is reported after it.
func TestWatchTUIInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux): cannot run watch on a terminal")
	}
	bin := buildBinary(t)
	session := "cs-watch-tui-" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	tmux := func(args ...string) string {
		out, _ := exec.Command("tmux", args...).CombinedOutput()
		return string(out)
	}
	capture := func() string { return tmux("capture-pane", "-p", "-t", session) }
	waitPane := func(want string) (string, bool) {
		var pane string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if pane = capture(); strings.Contains(pane, want) {
				return pane, true
			}
		}
		return pane, false
	}
	for _, tc := range []struct {
		name string
		argv []string
		quit bool
		want []string
	}{
		{"quit", []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=4k", "status=none"}, true, []string{"EXIT=0"}},
		{"all gone", []string{"sleep", "1.5"}, false, []string{"exited", "every watched process has exited", "EXIT=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			child := exec.Command(tc.argv[0], tc.argv[1:]...)
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { child.Process.Kill(); child.Wait() })
			pid := strconv.Itoa(child.Process.Pid)
			cmd := bin + " watch --mode proc --interval 300ms --by thread --pid " + pid + "; echo EXIT=$?; sleep 60"
			if out := tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "40", cmd); out != "" {
				t.Fatalf("tmux new-session: %s", out)
			}
			t.Cleanup(func() { tmux("kill-session", "-t", session) })
			subject := tc.argv[0] + ":" + pid
			if pane, ok := waitPane(subject); !ok {
				t.Fatalf("the UI never showed thread %s:\n%s", subject, pane)
			}
			if tc.quit {
				if pane := capture(); !strings.Contains(pane, "copyscope watch") {
					t.Errorf("no UI title on the terminal:\n%s", pane)
				}
				tmux("send-keys", "-t", session, "q")
			}
			pane, ok := waitPane("EXIT=")
			if !ok {
				t.Fatalf("watch did not end:\n%s", pane)
			}
			for _, w := range tc.want {
				if !strings.Contains(pane, w) {
					t.Errorf("terminal after watch lacks %q:\n%s", w, pane)
				}
			}
		})
	}
}
