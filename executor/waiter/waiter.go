package waiter

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Available reports whether this architecture has a waiter. Where it does
// not, the init stays a Go process while it waits (it works the same, with
// about 1.5 MiB more held per created container).
func Available() bool { return len(code) > 0 }

// The ELF image: a 64-bit header, a PT_LOAD segment mapping the whole file
// read+execute at base, a PT_GNU_STACK entry (non-executable stack), then
// the code. The entry point is the first byte of code.
const (
	base     = 0x400000
	ehdrSize = 64
	phdrSize = 56
	nPhdr    = 2
	hdrSize  = ehdrSize + nPhdr*phdrSize
)

// ELF returns the waiter as a static ELF executable.
func ELF() []byte { return elf(code) }

// elf wraps code in the ELF image described above.
func elf(code []byte) []byte {
	total := hdrSize + len(code)
	b := make([]byte, hdrSize, total)
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */})
	le.PutUint16(b[16:], 2)            // e_type: ET_EXEC
	le.PutUint16(b[18:], machine)      // e_machine
	le.PutUint32(b[20:], 1)            // e_version
	le.PutUint64(b[24:], base+hdrSize) // e_entry
	le.PutUint64(b[32:], ehdrSize)     // e_phoff
	le.PutUint16(b[52:], ehdrSize)     // e_ehsize
	le.PutUint16(b[54:], phdrSize)     // e_phentsize
	le.PutUint16(b[56:], nPhdr)        // e_phnum
	p := b[ehdrSize:]
	le.PutUint32(p[0:], 1)              // PT_LOAD
	le.PutUint32(p[4:], 5)              // PF_R|PF_X
	le.PutUint64(p[16:], base)          // p_vaddr
	le.PutUint64(p[24:], base)          // p_paddr
	le.PutUint64(p[32:], uint64(total)) // p_filesz
	le.PutUint64(p[40:], uint64(total)) // p_memsz
	le.PutUint64(p[48:], 0x1000)        // p_align
	p = b[ehdrSize+phdrSize:]
	le.PutUint32(p[0:], 0x6474e551) // PT_GNU_STACK
	le.PutUint32(p[4:], 6)          // PF_R|PF_W
	return append(b, code...)
}

// Memfd returns a close-on-exec memfd holding the waiter, sealed against
// any change: the container can see it as /proc/PID/exe while it waits,
// and must not be able to write it.
func Memfd() (int, error) { return memfd("reconciled-waiter", ELF()) }

func memfd(name string, img []byte) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	for off := 0; off < len(img); {
		n, err := unix.Write(fd, img[off:])
		if err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("write memfd", err)
		}
		off += n
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("seal memfd", err)
	}
	return fd, nil
}

// Exec replaces the calling process with the waiter in memfd fd, which
// will exec path with argv and env once the exec fifo under the directory
// at fd 3 is opened for reading. It returns only on failure.
//
// The caller must have marked every other descriptor close-on-exec and
// must restore any rlimit the Go runtime changed (RLIMIT_NOFILE), since
// this is a raw execveat, not syscall.Exec.
func Exec(fd int, path string, argv, env []string) error {
	return execveat("waiter", fd, append([]string{path}, argv...), env)
}

// execveat execs the program in fd (AT_EMPTY_PATH) with argv and env; it
// returns only on failure, the error naming the program as what.
func execveat(what string, fd int, argv, env []string) error {
	args, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, err := syscall.BytePtrFromString("")
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&args[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return fmt.Errorf("execveat %s: %w", what, errno)
}

// UsernsJoinerAvailable reports whether this architecture has the
// user-namespace joiner (userns_amd64.S), which a process exec'd into a
// container with its own user namespace runs first. Where it does not,
// exec into such a container is refused.
func UsernsJoinerAvailable() bool { return len(usernsCode) > 0 }

// UsernsJoinerMemfd returns a close-on-exec, sealed memfd holding the
// user-namespace joiner.
func UsernsJoinerMemfd() (int, error) { return memfd("reconciled-userns", elf(usernsCode)) }

// ReaperAvailable reports whether this architecture has the reaper: the
// program a container's monitor becomes once the container is created
// (reaper_amd64.S). Where it does not, the monitor waits as a Go process.
func ReaperAvailable() bool { return len(reaperCode) > 0 }

// MonitorEnv, the first variable of the reaper's environment, makes it the
// whole monitor of a container (see reaper_amd64.S): its value is the
// init's clone flags in decimal, followed by "c" when the init is to be
// cloned into the cgroup2 directory sent on the sync socket; the rest of
// the environment is the init's. The value "s" makes it the spawner,
// which forks monitors with the flags of each request instead.
const MonitorEnv = "_RECONCILED_MONITOR"

// ReaperMemfd returns a close-on-exec, sealed memfd holding the reaper.
func ReaperMemfd() (int, error) { return memfd("reconciled-reaper", elf(reaperCode)) }

// ExecReaper replaces the calling process with the reaper in memfd fd,
// with argv (what ps shows) and no environment. The caller must have put
// the state directory at fd 3 and the OOM counter file (or nothing) at fd
// 4, and marked every other descriptor above 2 close-on-exec. It returns
// only on failure.
func ExecReaper(fd int, argv []string) error {
	return execveat("reaper", fd, argv, nil)
}

// ExitFile is the file the reaper writes in the state directory, and
// ExitMagic its first line; see ParseExit.
const (
	ExitFile  = "exit"
	ExitMagic = "reconciled-exit 1"
)

// Exit is what the reaper recorded.
type Exit struct {
	Status    unix.WaitStatus
	HasStatus bool // false: wait4 failed
	Sec, Nsec int64
	OOMFile   string // the OOM counter file's content, "" when there was none
}

// ParseExit parses the reaper's file.
func ParseExit(data []byte) (Exit, error) {
	var e Exit
	rest := string(data)
	line := func() (string, bool) {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			return "", false
		}
		l := rest[:i]
		rest = rest[i+1:]
		return l, true
	}
	if l, ok := line(); !ok || l != ExitMagic {
		return e, fmt.Errorf("not a reaper exit record")
	}
	l, ok := line()
	if !ok {
		return e, fmt.Errorf("truncated exit record")
	}
	if v, found := strings.CutPrefix(l, "status "); found {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return e, fmt.Errorf("exit record: status %q: %w", v, err)
		}
		e.Status, e.HasStatus = unix.WaitStatus(n), true
		if l, ok = line(); !ok {
			return e, fmt.Errorf("truncated exit record")
		}
	}
	v, found := strings.CutPrefix(l, "time ")
	sec, nsec, _ := strings.Cut(v, " ")
	var err1, err2 error
	e.Sec, err1 = strconv.ParseInt(sec, 10, 64)
	e.Nsec, err2 = strconv.ParseInt(nsec, 10, 64)
	if !found || err1 != nil || err2 != nil {
		return e, fmt.Errorf("exit record: time %q", l)
	}
	e.OOMFile = rest
	return e, nil
}

// ExecFailedPrefix starts what the waiter writes to the fifo when it cannot
// exec the user program; three decimal digits of errno follow.
const ExecFailedPrefix = "execve failed: errno "
