package proc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/PID/mountinfo (proc_pid_mountinfo(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Paths come with the kernel's octal escapes (\040 for a space, \011,
// \012, \134) undone. The field names are those of
// github.com/moby/sys/mountinfo's Info.
type Mount struct {
	ID, Parent   int    // (1), (2): this mount's ID and its parent's (its own for the root)
	Major, Minor int    // (3): st_dev of the files on the filesystem
	Root         string // (4): the directory of the filesystem mounted here
	Mountpoint   string // (5): where, relative to the process's root
	Options      string // (6): per-mount options ("rw,nosuid")
	Optional     []string
	FSType       string // (9)
	Source       string // (10): filesystem specific, or "none"
	VFSOptions   string // (11): the superblock's options ("rw,memory")
}

// Shared says whether the mount is a member of a shared peer group (an
// optional field "shared:N"): mounts and unmounts below it propagate.
func (m *Mount) Shared() bool {
	for _, o := range m.Optional {
		if strings.HasPrefix(o, "shared:") {
			return true
		}
	}
	return false
}

// Mounts reads the calling thread's mountinfo (/proc/thread-self: a
// thread that has joined another mount namespace sees that one's) and
// returns the mounts for which keep says true (every mount with keep nil).
func Mounts(keep func(*Mount) bool) ([]Mount, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := ParseMountinfo(f, keep)
	if err != nil {
		return nil, fmt.Errorf("/proc/thread-self/mountinfo: %w", err)
	}
	return ms, nil
}

// ParseMountinfo parses a mountinfo text and returns the mounts for which
// keep says true (every mount with keep nil). A malformed line is an error
// naming it. Lines are not limited in length: an overlay mount with
// hundreds of layers has a long list of super options.
func ParseMountinfo(r io.Reader, keep func(*Mount) bool) ([]Mount, error) {
	var out []Mount
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if line = strings.TrimSuffix(line, "\n"); line != "" {
			m, perr := ParseMountinfoLine(line)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w: %q", n, perr, line)
			}
			if keep == nil || keep(&m) {
				out = append(out, m)
			}
		}
		if err != nil {
			return out, nil
		}
	}
}

// ParseMountinfoLine parses one line of mountinfo (without its newline).
func ParseMountinfoLine(line string) (Mount, error) {
	var m Mount
	fields := strings.Fields(line)
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 {
		return m, errors.New("no separator '-' after six fields")
	}
	if len(fields) < sep+3 {
		return m, errors.New("fewer than two fields after the separator")
	}
	var err1, err2 error
	m.ID, err1 = strconv.Atoi(fields[0])
	m.Parent, err2 = strconv.Atoi(fields[1])
	if err := errors.Join(err1, err2); err != nil {
		return m, fmt.Errorf("mount ID: %w", err)
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	m.Major, err1 = strconv.Atoi(maj)
	m.Minor, err2 = strconv.Atoi(min)
	if !ok || err1 != nil || err2 != nil {
		return m, fmt.Errorf("major:minor %q", fields[2])
	}
	m.Root = unescape(fields[3])
	m.Mountpoint = unescape(fields[4])
	m.Options = fields[5]
	if sep > 6 {
		m.Optional = fields[6:sep]
	}
	m.FSType = unescape(fields[sep+1])
	m.Source = unescape(fields[sep+2])
	if sep+3 < len(fields) {
		m.VFSOptions = fields[sep+3]
	}
	return m, nil
}

// unescape undoes the kernel's octal escapes (\040 for a space, …) in a
// mountinfo field; a '\' not followed by a byte's three octal digits
// stays.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] <= '3' && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
