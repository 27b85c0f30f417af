package executor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The binary as shipped (packaging/build.sh) carries a second, smaller Go
// binary after its end: cmd/reconciled-stage, the re-exec stages (monitor,
// init, exec, user namespace holder) without the CLI, the daemon and the
// image store. A Go process runs the init functions of every package it
// links before main; this one links half of them and starts in about half
// the time (on a 2-core VM with 12 us page faults, 8.2 ms instead of 13.9:
// every container init and every monitor not in machine code pays it).
//
// A trailer of stageTrailerSize bytes ends the file: stageMagic, then the
// appended binary's offset and length, 16 hex digits each. The runtime
// copies that binary into a sealed memfd once (as runc clones itself, and
// for the same reason: a container can then not write the runtime through
// /proc/PID/exe, CVE-2019-5736) and execs it for the stages. A binary
// without the trailer (go build, go install, a test binary) runs the
// stages from itself, through a read-only bind mount.
const (
	stageMagic       = "RECONCILEDSTAGE1"
	stageTrailerSize = len(stageMagic) + 32
)

// stageImage returns where the appended stage binary lies in exe, or
// ok false when exe carries none. A trailer that does not describe an ELF
// binary ending where the trailer begins is an error.
func stageImage(exe *os.File) (off, n int64, ok bool, err error) {
	fi, err := exe.Stat()
	if err != nil {
		return 0, 0, false, err
	}
	size := fi.Size()
	if size < int64(stageTrailerSize) {
		return 0, 0, false, nil
	}
	var t [stageTrailerSize]byte
	if _, err := exe.ReadAt(t[:], size-int64(stageTrailerSize)); err != nil {
		return 0, 0, false, fmt.Errorf("read the stage trailer of %s: %w", exe.Name(), err)
	}
	if !bytes.HasPrefix(t[:], []byte(stageMagic)) {
		return 0, 0, false, nil
	}
	bad := func(why string) (int64, int64, bool, error) {
		return 0, 0, false, fmt.Errorf("%s: the appended stage binary's trailer %q: %s (rebuild with packaging/build.sh)", exe.Name(), t[:], why)
	}
	o, err1 := strconv.ParseInt(string(t[len(stageMagic):len(stageMagic)+16]), 16, 64)
	l, err2 := strconv.ParseInt(string(t[len(stageMagic)+16:]), 16, 64)
	if err1 != nil || err2 != nil {
		return bad("not two hex numbers")
	}
	if o <= 0 || l <= 0 || o+l != size-int64(stageTrailerSize) {
		return bad(fmt.Sprintf("offset %d and length %d do not end where the trailer begins (%d)", o, l, size-int64(stageTrailerSize)))
	}
	var elf [4]byte
	if _, err := exe.ReadAt(elf[:], o); err != nil {
		return 0, 0, false, fmt.Errorf("read the stage binary of %s: %w", exe.Name(), err)
	}
	if string(elf[:]) != "\x7fELF" {
		return bad("no ELF binary at that offset")
	}
	return o, l, true, nil
}

// stageMemfd copies n bytes of exe from off into a new memfd and seals it
// against any change. It returns the descriptor (close-on-exec).
func stageMemfd(exe *os.File, off, n int64) (int, error) {
	fd, err := unix.MemfdCreate("reconciled-stage", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("copy the stage binary into a memfd: %w", err)
	}
	for end := off + n; off < end; {
		w, err := unix.Sendfile(fd, int(exe.Fd()), &off, int(end-off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail(os.NewSyscallError("sendfile", err))
		}
		if w == 0 {
			return fail(io.ErrUnexpectedEOF)
		}
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail(os.NewSyscallError("fcntl(F_ADD_SEALS)", err))
	}
	return fd, nil
}

// stageExe returns a handle on the binary to exec for the stages: a sealed
// memfd with the appended stage binary when this binary has one, else a
// read-only handle on this binary (readOnlySelfExe, in dir).
func stageExe(dir string) (*os.File, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("stage binary: %w", err)
	}
	defer exe.Close()
	off, n, ok, err := stageImage(exe)
	if err != nil {
		return nil, err
	}
	if !ok {
		return readOnlySelfExe(dir)
	}
	fd, err := stageMemfd(exe, off, n)
	if err != nil {
		return nil, err
	}
	return highFile(fd, "reconciled-stage")
}

// errNoStage says that a binary carries no appended stage binary.
var errNoStage = errors.New("no appended stage binary")

// StageInfo describes the stage binary appended to the binary at path
// ("/proc/self/exe": this one): its size, or errNoStage. `reconciled
// version` prints it.
func StageInfo(path string) (size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	_, n, ok, err := stageImage(f)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errNoStage
	}
	return n, nil
}

// IsNoStage reports whether err says a binary carries no stage binary.
func IsNoStage(err error) bool { return errors.Is(err, errNoStage) }
