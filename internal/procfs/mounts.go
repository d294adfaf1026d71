package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of a mountinfo file.
type Mount struct {
	Point  string // where it is mounted, unescaped
	FSType string
}

// Mounts reads this process's mount table, /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	p := Self().Path("mountinfo")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	ms, err := ParseMountinfo(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return ms, nil
}

// MountPoints lists where filesystems of type fstype are mounted, in
// mount order.
func MountPoints(fstype string) ([]string, error) {
	ms, err := Mounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.FSType == fstype {
			out = append(out, m.Point)
		}
	}
	return out, nil
}

// ParseMountinfo parses mountinfo lines (proc(5)): "id parent major:minor
// root mount-point options [optional fields...] - fstype source
// super-options". Blank lines are skipped.
func ParseMountinfo(b []byte) ([]Mount, error) {
	var out []Mount
	for n, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			return nil, fmt.Errorf("line %d: no \"- fstype\" after the optional fields: %q", n+1, line)
		}
		out = append(out, Mount{Point: unescapeOctal(f[4]), FSType: f[sep+1]})
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mount points.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
