//go:build linux

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Stat is what this module reads of /proc/PID/stat (proc_pid_stat(5)).
type Stat struct {
	// Comm is field 2, the command name, without its parentheses. The
	// kernel writes it as the process set it (prctl PR_SET_NAME, a write
	// to /proc/PID/comm): it may hold spaces, parentheses and newlines.
	Comm string
	// State is field 3: 'R', 'S', 'D', 'Z' (zombie), 'X' (dead), ….
	State byte
	// PPID is field 4, the parent's PID.
	PPID int
	// UTime and STime are fields 14 and 15: CPU time in user and kernel
	// mode, in clock ticks.
	UTime, STime uint64
	// StartTime is field 22: when the process started, in clock ticks
	// since boot. With the PID it names one process for the life of the
	// host: a PID that is reused has another start time.
	StartTime uint64
}

// Zombie says whether the process has exited and waits to be reaped
// (state Z) or is being torn down (state X): it runs no more.
func (s *Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// ParseStat parses the content of /proc/PID/stat.
func ParseStat(data []byte) (Stat, error) {
	var s Stat
	comm, err := parseStat(data, &s)
	if err != nil {
		return s, err
	}
	s.Comm = string(comm)
	return s, nil
}

// parseStat fills all of s but Comm from data and returns the command name:
// the fields after it start after the LAST ')' of data, since the name
// itself may hold ')' and spaces. It does not allocate but for an error,
// and data does not escape: a caller's buffer may live on its stack.
func parseStat(data []byte, s *Stat) (comm []byte, err error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open || end+2 >= len(data) || data[end+1] != ' ' {
		return nil, fmt.Errorf("no command name in parentheses in %q", string(data))
	}
	comm = data[open+1 : end]
	rest := data[end+2:]
	// rest starts with field 3 (state); field f is the (f-3)th word.
	for f := 3; f <= 22; f++ {
		word := rest
		if j := bytes.IndexByte(rest, ' '); j >= 0 {
			word, rest = rest[:j], rest[j+1:]
		} else {
			rest = nil
		}
		word = bytes.TrimRight(word, "\n")
		if len(word) == 0 {
			return nil, fmt.Errorf("field %d missing in %q", f, string(data))
		}
		var n uint64
		if f == 4 || f == 14 || f == 15 || f == 22 {
			var ok bool
			if n, ok = parseUint(word); !ok {
				return nil, fmt.Errorf("field %d of %q is not a number", f, string(data))
			}
		}
		switch f {
		case 3:
			s.State = word[0]
		case 4:
			s.PPID = int(n)
		case 14:
			s.UTime = n
		case 15:
			s.STime = n
		case 22:
			s.StartTime = n
		}
	}
	return comm, nil
}

// parseUint is strconv.ParseUint(string(b), 10, 64) without the string
// (and its allocation).
func parseUint(b []byte) (uint64, bool) {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' || n > (1<<64-1-9)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, len(b) > 0
}

// ReadStat reads and parses /proc/PID/stat. When there is no such process
// the error satisfies Gone.
func ReadStat(pid int) (Stat, error) {
	var s Stat
	var buf [statBufSize]byte
	data, err := readStat(pid, buf[:])
	if err != nil {
		return s, err
	}
	comm, err := parseStat(data, &s)
	if err != nil {
		return s, fmt.Errorf("unable to parse /proc/%d/stat: %w", pid, err)
	}
	s.Comm = string(comm)
	return s, nil
}

// StartTime returns the start time of pid (Stat.StartTime) and whether it
// is a zombie.
func StartTime(pid int) (start uint64, zombie bool, err error) {
	var s Stat
	var buf [statBufSize]byte
	data, err := readStat(pid, buf[:])
	if err != nil {
		return 0, false, err
	}
	if _, err := parseStat(data, &s); err != nil {
		return 0, false, fmt.Errorf("unable to parse /proc/%d/stat: %w", pid, err)
	}
	return s.StartTime, s.Zombie(), nil
}

// Alive reports whether the process (pid, start) runs: pid exists, is not
// a zombie and started at start. It says false only on evidence (no /proc
// entry, a zombie, another start time: the PID was reused); a /proc entry
// that cannot be read or parsed is an error. It does not allocate on the
// way to an answer: the daemon asks it of every live container often.
func Alive(pid int, start uint64) (bool, error) {
	if pid <= 0 {
		return false, nil
	}
	var s Stat
	var buf [statBufSize]byte
	data, err := readStat(pid, buf[:])
	if err != nil {
		if Gone(err) {
			return false, nil
		}
		return false, err
	}
	if _, err := parseStat(data, &s); err != nil {
		return false, fmt.Errorf("unable to parse /proc/%d/stat: %w", pid, err)
	}
	return !s.Zombie() && s.StartTime == start, nil
}

// Running is Alive for callers that act only on a process known to run:
// a /proc entry that cannot be read counts as not running.
func Running(pid int, start uint64) bool {
	ok, err := Alive(pid, start)
	return err == nil && ok
}

// Exists says whether pid exists and is not a zombie, whatever its start
// time (a test's check that a process it started has gone).
func Exists(pid int) bool {
	s, err := ReadStat(pid)
	return err == nil && !s.Zombie()
}

// Gone says whether err is the kernel saying a /proc or cgroupfs entry no
// longer exists (ENOENT; ESRCH and ENODEV for a process or cgroup that
// went while it was read).
func Gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, fs.ErrNotExist)
}

// statBufSize holds any /proc/PID/stat line: 52 numeric fields of at most
// 20 digits and a command name of at most 64 bytes. A longer read falls
// back to reading the whole file.
const statBufSize = 1280

// readStat reads /proc/pid/stat into buf, or into a new buffer when it
// does not fit.
func readStat(pid int, buf []byte) ([]byte, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	n, err := sys.ReadSmall(path, buf)
	if err != nil {
		return nil, err
	}
	if n < len(buf) {
		return buf[:n], nil
	}
	return os.ReadFile(path)
}

// NamespaceInit reports whether pid is the first process (PID 1) of a PID
// namespace below the one this process reads /proc in: the last field of
// the NSpid line of /proc/PID/status is 1 and there is more than one.
// Killing such a process kills every process of its namespace, and of
// the namespaces below it, before its own exit completes.
func NamespaceInit(pid int) (bool, error) {
	data, err := sys.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false, err
	}
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte("NSpid:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		return len(f) > 1 && string(f[len(f)-1]) == "1", nil
	}
	return false, fmt.Errorf("/proc/%d/status has no NSpid line (Linux 4.1)", pid)
}
