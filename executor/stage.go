package executor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// The binary as shipped (packaging/build.sh) carries a second, lean build
// of itself after its end (-tags reconciled_lean): the re-exec stages
// (monitor, init, exec, user namespace holder), `reconciled runtime` and
// reconciled-runc, without the daemon, the image store and their
// dependencies. A Go process runs the init functions of every package it
// links before main; the lean build links half of them and starts in
// about half the time (on a 2-core VM with 12 us page faults, 8.2 ms
// instead of 13.9: every container init, every monitor not in machine
// code and every runtime command pays it).
//
// A trailer of stageTrailerSize bytes ends the file: stageMagic, then the
// appended binary's offset (page-aligned) and length, 16 lower-case hex
// digits each. Nothing else changes: the stages are exec'd from this file
// as before (a read-only bind mount of it: selfExe), users run it as
// before; its entry point (shippedEntry, before the Go runtime) maps the
// lean build from the same file in place of itself and jumps to it. A
// binary without the trailer (go build, go install, a test binary) runs
// everything itself.
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
	if o <= 0 || o%4096 != 0 || l <= 0 || o+l != size-int64(stageTrailerSize) {
		return bad(fmt.Sprintf("offset %d (page-aligned) and length %d do not end where the trailer begins (%d)", o, l, size-int64(stageTrailerSize)))
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
