package cgroups

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device rules on cgroup v2: the kernel has no devices files there; it
// runs the eBPF programs of type BPF_PROG_TYPE_CGROUP_DEVICE attached to a
// process's cgroup and to its ancestors (all of them must allow), before
// the v1 devices controller where that is mounted too. This file loads
// the program that devices_rules.go builds and attaches it with raw
// bpf(2), as runc and crun do, without an eBPF library.

// setDevicesV2 makes rules the device policy of the cgroup2 directory dir:
// it loads their program (or takes it from the ones this process loaded
// before, see deviceProgram), attaches it with BPF_F_ALLOW_MULTI, then
// detaches every other device program that was attached to dir before
// (found with BPF_PROG_QUERY: an earlier Apply's or Set's), so that
// exactly the new one is left and no access is allowed in between that
// either the old or the new rules deny. When the same program is attached
// already (a Set with unchanged rules) only the others are detached.
func setDevicesV2(dir string, rules []specs.LinuxDeviceCgroup) error {
	f, err := compileDeviceRules(rules)
	if err != nil {
		return err
	}
	cg, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("setting the device rules of cgroup %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(cg)
	old, flags, err := queryDevicePrograms(cg)
	if err != nil {
		return fmt.Errorf("setting the device rules of cgroup %s: %w", dir, err)
	}
	prog, id, err := deviceProgram(encodeProgram(f.program()))
	if err != nil {
		return fmt.Errorf("setting the device rules of cgroup %s: %w", dir, err)
	}
	defer unix.Close(prog)
	if slices.Contains(old, id) {
		old = slices.DeleteFunc(old, func(o uint32) bool { return o == id })
	} else if len(old) > 0 && flags&unix.BPF_F_ALLOW_MULTI == 0 {
		// Someone attached one program without BPF_F_ALLOW_MULTI: an
		// attach with the same flags replaces it in one step.
		old, err = nil, bpfAttach(unix.BPF_PROG_ATTACH, cg, prog, flags)
	} else {
		err = bpfAttach(unix.BPF_PROG_ATTACH, cg, prog, unix.BPF_F_ALLOW_MULTI)
	}
	if err != nil {
		return fmt.Errorf("setting the device rules of cgroup %s: attaching the device program: %w", dir, err)
	}
	var errs []error
	for _, id := range old {
		if err := detachDeviceProgram(cg, id); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cgroup %s: the new device rules are in force, but an old device program stays attached (both apply): %w", dir, errors.Join(errs...))
	}
	return nil
}

// maxDevicePrograms bounds the programs deviceProgram keeps loaded.
const maxDevicePrograms = 16

// devicePrograms are the programs this process loaded, by their code:
// containers with the same rules (in the daemon nearly all of them) share
// one program, attached to each of their cgroups. A load (the verifier
// and the JIT) costs a few hundred microseconds, an attach about ten. A
// program stays in the kernel while it is attached or held here; beyond
// maxDevicePrograms the oldest is let go (its attachments stay).
var devicePrograms struct {
	sync.Mutex
	byCode map[string]loadedProgram
	order  []string // oldest first
}

type loadedProgram struct {
	fd int
	id uint32
}

// deviceProgram returns a new fd (close-on-exec; the caller closes it) of
// the program for code, and the program's id.
func deviceProgram(code []byte) (int, uint32, error) {
	dp := &devicePrograms
	dp.Lock()
	defer dp.Unlock()
	p, ok := dp.byCode[string(code)]
	if !ok {
		fd, err := loadDeviceProgram(code)
		if err != nil {
			return -1, 0, err
		}
		id, err := programID(fd)
		if err != nil {
			unix.Close(fd)
			return -1, 0, err
		}
		if dp.byCode == nil {
			dp.byCode = map[string]loadedProgram{}
		}
		p = loadedProgram{fd: fd, id: id}
		dp.byCode[string(code)] = p
		dp.order = append(dp.order, string(code))
		if len(dp.order) > maxDevicePrograms {
			unix.Close(dp.byCode[dp.order[0]].fd)
			delete(dp.byCode, dp.order[0])
			dp.order = dp.order[1:]
		}
	}
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("duplicating the device program's fd: %w", os.NewSyscallError("fcntl", err))
	}
	return fd, p.id, nil
}

// programID reads the id of the program fd (BPF_OBJ_GET_INFO_BY_FD; id is
// the second field of struct bpf_prog_info).
func programID(fd int) (uint32, error) {
	var info struct{ typ, id uint32 }
	attr := struct {
		fd, infoLen uint32
		info        uint64
	}{fd: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: uint64(uintptr(unsafe.Pointer(&info)))}
	_, err := bpf(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	if err != nil {
		return 0, fmt.Errorf("reading the device program's id: %w", err)
	}
	return info.id, nil
}

// detachDeviceProgram detaches the program with id from the cgroup cg; one
// that is gone meanwhile is no error.
func detachDeviceProgram(cg int, id uint32) error {
	attr := struct{ id, nextID, openFlags uint32 }{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening device program %d: %w", id, err)
	}
	defer unix.Close(fd)
	if err := bpfAttach(unix.BPF_PROG_DETACH, cg, fd, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detaching device program %d: %w", id, err)
	}
	return nil
}

// queryDevicePrograms lists the ids of the device programs attached to the
// cgroup cg itself (not its ancestors'), and the attach flags.
func queryDevicePrograms(cg int) ([]uint32, uint32, error) {
	ids := make([]uint32, 64) // the kernel's limit per cgroup and type
	for attempt := 0; ; attempt++ {
		attr := struct {
			targetFD, attachType, queryFlags, attachFlags uint32
			progIDs                                       uint64
			progCnt, _                                    uint32
		}{
			targetFD:   uint32(cg),
			attachType: unix.BPF_CGROUP_DEVICE,
			progIDs:    uint64(uintptr(unsafe.Pointer(&ids[0]))),
			progCnt:    uint32(len(ids)),
		}
		_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		runtime.KeepAlive(ids)
		if errors.Is(err, unix.ENOSPC) && attempt < 3 {
			ids = make([]uint32, attr.progCnt)
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("listing the device programs: %w", err)
		}
		return ids[:attr.progCnt], attr.attachFlags, nil
	}
}

// loadDeviceProgram loads code as a BPF_PROG_TYPE_CGROUP_DEVICE program and
// returns its fd (close-on-exec). When the verifier refuses it, the error
// carries the verifier's log. Kernels before 5.11 charge the program to
// RLIMIT_MEMLOCK: on EPERM the limit is raised for the load and put back.
func loadDeviceProgram(code []byte) (int, error) {
	fd, err := progLoad(code, nil)
	if errors.Is(err, unix.EPERM) {
		var old unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old) == nil && old.Cur != unix.RLIM_INFINITY {
			if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}) == nil {
				fd, err = progLoad(code, nil)
				_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)
			}
		}
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EACCES) {
		// Again, with the verifier's log.
		log := make([]byte, 64<<10)
		var lerr error
		if fd, lerr = progLoad(code, log); lerr == nil {
			err = nil
		} else if n := indexZero(log); n > 0 {
			err = fmt.Errorf("%w; verifier: %s", err, log[:n])
		}
	}
	if err != nil {
		return -1, fmt.Errorf("loading the device program: %w", err)
	}
	return fd, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// progLoad is BPF_PROG_LOAD of a cgroup device program; log, when not nil,
// receives the verifier's log.
func progLoad(code []byte, log []byte) (int, error) {
	license := []byte("Apache\x00")
	attr := struct {
		progType, insnCnt   uint32
		insns, license      uint64
		logLevel, logSize   uint32
		logBuf              uint64
		kernVersion, flags  uint32
		name                [16]byte
		ifindex, attachType uint32
	}{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(code) / insnBytes),
		insns:    uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(attr.name[:], "reconciled_dev")
	if len(log) > 0 {
		attr.logLevel, attr.logSize = 1, uint32(len(log))
		attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
	}
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	runtime.KeepAlive(log)
	return fd, err
}

// bpfAttach is BPF_PROG_ATTACH or BPF_PROG_DETACH of program prog to the
// cgroup cg as its device program.
func bpfAttach(cmd uintptr, cg, prog int, flags uint32) error {
	attr := struct{ targetFD, progFD, attachType, flags, replaceFD uint32 }{
		targetFD: uint32(cg), progFD: uint32(prog), attachType: unix.BPF_CGROUP_DEVICE, flags: flags,
	}
	_, err := bpf(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

var bpfCmdNames = map[uintptr]string{
	unix.BPF_PROG_LOAD: "BPF_PROG_LOAD", unix.BPF_PROG_ATTACH: "BPF_PROG_ATTACH",
	unix.BPF_PROG_DETACH: "BPF_PROG_DETACH", unix.BPF_PROG_QUERY: "BPF_PROG_QUERY",
	unix.BPF_PROG_GET_FD_BY_ID: "BPF_PROG_GET_FD_BY_ID", unix.BPF_OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
}

// bpf is the bpf(2) system call, retried on EINTR and EAGAIN (which
// BPF_PROG_LOAD returns when interrupted).
func bpf(cmd uintptr, attr unsafe.Pointer, size uintptr) (int, error) {
	for attempt := 0; ; attempt++ {
		r, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
		if (e == unix.EINTR || e == unix.EAGAIN) && attempt < 5 {
			continue
		}
		if e != 0 {
			return -1, os.NewSyscallError("bpf("+bpfCmdNames[cmd]+")", e)
		}
		return int(r), nil
	}
}
