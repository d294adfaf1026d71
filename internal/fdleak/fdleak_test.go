package fdleak

import (
	"os"
	"strings"
	"testing"
)

func TestOpenSeesANewFile(t *testing.T) {
	before, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "leak")
	if err != nil {
		t.Fatal(err)
	}
	after, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	target, ok := after[int(f.Fd())]
	if !ok || !strings.HasSuffix(target, f.Name()[strings.LastIndex(f.Name(), "/"):]) {
		t.Fatalf("fd %d (%s) not listed: %v", f.Fd(), f.Name(), after)
	}
	if _, was := before[int(f.Fd())]; was {
		t.Fatalf("fd %d listed before it was opened", f.Fd())
	}
	f.Close()
	if again, _ := Open(); again[int(f.Fd())] != "" && again[int(f.Fd())] == target {
		t.Fatalf("closed fd %d still listed", f.Fd())
	}
}
