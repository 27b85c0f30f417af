// Command sysprobe makes the system calls a seccomp test asks for and
// prints one line per call: "name=ok" or "name=ERRNO" (EPERM, EINVAL, ...).
// Tests build it static (CGO_ENABLED=0) and run it inside a container:
// busybox has no tool for most of these calls.
//
// getppid-loop:N prints the nanoseconds one getppid takes, over N calls;
// nr:N makes system call number N.
//
//	sysprobe keyctl add_key unshare-user mount ptrace:PID kexec_load bpf open_by_handle_at personality:0 personality:8 getppid
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	runtime.LockOSThread()
	for _, arg := range os.Args[1:] {
		if n, ok := strings.CutPrefix(arg, "getppid-loop:"); ok {
			fmt.Printf("%s=%s\n", arg, getppidLoop(n))
			continue
		}
		fmt.Printf("%s=%s\n", arg, result(call(arg)))
	}
}

// getppidLoop times n getppid calls: nanoseconds per call.
func getppidLoop(n string) string {
	count, err := strconv.Atoi(n)
	if err != nil || count <= 0 {
		return "bad count"
	}
	start := time.Now()
	for range count {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	return strconv.FormatFloat(float64(time.Since(start).Nanoseconds())/float64(count), 'f', 1, 64)
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func raw(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if e != 0 {
		return e
	}
	return nil
}

func call(name string) error {
	name, arg, _ := strings.Cut(name, ":")
	switch name {
	case "keyctl": // the session keyring's ID
		return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd), 0) // KEY_SPEC_SESSION_KEYRING
	case "add_key":
		typ, desc, payload := []byte("user\x00"), []byte("sysprobe\x00"), []byte("x")
		return raw(unix.SYS_ADD_KEY, uintptr(unsafe.Pointer(&typ[0])), uintptr(unsafe.Pointer(&desc[0])),
			uintptr(unsafe.Pointer(&payload[0])), 1, uintptr(0xfffffffe)) // KEY_SPEC_PROCESS_KEYRING
	case "unshare-user":
		return raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	case "mount":
		return unix.Mount("none", "/tmp", "tmpfs", 0, "")
	case "ptrace": // attach to process arg (default 1), then let go
		pid := 1
		if arg != "" {
			n, err := strconv.Atoi(arg)
			if err != nil {
				return err
			}
			pid = n
		}
		err := unix.PtraceAttach(pid)
		if err == nil {
			unix.PtraceDetach(pid)
		}
		return err
	case "kexec_load":
		return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0)
	case "bpf": // BPF_MAP_CREATE with an empty attribute
		var attr [64]byte
		return raw(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	case "open_by_handle_at":
		h := make([]byte, 16) // struct file_handle: handle_bytes 8, handle_type 1
		h[0], h[4] = 8, 1
		cwd := unix.AT_FDCWD
		return raw(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(cwd), uintptr(unsafe.Pointer(&h[0])), 0)
	case "personality":
		v, err := strconv.ParseUint(arg, 0, 64)
		if err != nil {
			return err
		}
		return raw(unix.SYS_PERSONALITY, uintptr(v))
	case "getppid":
		return raw(unix.SYS_GETPPID)
	case "nr": // a raw system call by number, no arguments
		n, err := strconv.ParseUint(arg, 0, 32)
		if err != nil {
			return err
		}
		return raw(uintptr(n))
	}
	return fmt.Errorf("unknown call %q", name)
}
