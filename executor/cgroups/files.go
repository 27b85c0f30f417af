package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"reconciled.dev/reconciled/internal/sys"
)

// writeFile writes value to dir/name in one write(2), truncating: the way
// every cgroup interface file wants it. The file must exist (cgroupfs makes
// them; a missing one means the controller is not there).
func writeFile(dir, name, value string) error {
	return write(filepath.Join(dir, name), value, os.O_WRONLY|os.O_TRUNC)
}

// appendFile writes value to dir/name opened O_APPEND, for the files where
// each write adds (cgroup.procs, cgroup.subtree_control): the kernel treats
// it like writeFile, a fake tree keeps every write.
func appendFile(dir, name, value string) error {
	return write(filepath.Join(dir, name), value, os.O_WRONLY|os.O_APPEND)
}

func write(path, value string, flag int) error {
	if err := sys.WriteFile(path, []byte(value), flag&^os.O_WRONLY); err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, path, bare(err))
	}
	return nil
}

// bare strips the *os.PathError around an errno, whose path our own
// message already names; errors.Is(err, os.ErrNotExist) still holds.
func bare(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readFile reads dir/name, trailing newline removed.
func readFile(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	b, err := sys.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", p, bare(err))
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// readUint reads a file that holds one number; "max" reads as 0 (no limit).
func readUint(dir, name string) (uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	return parseUint(filepath.Join(dir, name), s)
}

func parseUint(path, s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Some v1 files read -1 for "no limit".
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}

// readKeyed reads a flat keyed file ("key value" per line: memory.events,
// cpu.stat, memory.oom_control, cpuacct.stat, memory.stat).
func readKeyed(dir, name string) (map[string]uint64, error) {
	p := filepath.Join(dir, name)
	b, err := sys.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, bare(err))
	}
	return parseKeyed(p, b)
}

func parseKeyed(path string, b []byte) (map[string]uint64, error) {
	m := map[string]uint64{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("parsing %s: malformed line %q", path, s.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: line %q: %w", path, s.Text(), err)
		}
		m[f[0]] = v
	}
	return m, s.Err()
}

// readProcs reads a cgroup.procs file.
func readProcs(dir string) ([]int, error) {
	s, err := readFile(dir, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "cgroup.procs"), err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// optional turns a missing file into no error: a stat that the kernel or
// the controllers in use do not offer reads as zero.
func optional(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// statErrs collects what went wrong reading a cgroup's stats, but for
// what optional lets pass; errors.Join of none is nil.
type statErrs []error

func (e *statErrs) add(err error) {
	if err = optional(err); err != nil {
		*e = append(*e, err)
	}
}
