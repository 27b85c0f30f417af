// Package prefault maps every page of the running executable into the
// process in one call (madvise MADV_POPULATE_READ) as its start begins, in
// place of the hundred and more page faults by which the Go runtime and
// the package initializations would map them one 64 KiB window at a time.
//
// Where a fault is dear (under a hypervisor, 10-30 us each; measured on a
// 2-core VM: about 120 faults on the executable's pages per start, against
// 0.5-0.7 ms to map all 16 MiB of it), a start of this binary is 1.5-2.4 ms
// shorter: each command of the runtime's command line and each container's
// init starts it. The pages are the page cache's, shared: nothing is read
// or copied, though RSS counts them. The daemon (`reconciled run`), which
// starts once and then stays, does not do it, so that its RSS shows what
// it holds.
//
// It runs from this package's initialization, which comes right after the
// syscall package's: it imports nothing else (Go initializes a package as
// soon as its imports are, in import path order among the ready ones), so
// before the heavy packages (the image puller's, HTTP, TLS) fault in their
// code. Kernels before 5.14 refuse the advice; nothing happens then.
//
// Only the mappings of the running binary are populated: in a container
// stage of the binary as shipped, the executable file also holds
// reconciled itself, mapped by the kernel and never run (executor's
// shippedEntry maps the stage binary appended to it instead).
package prefault

import (
	"syscall"
	"unsafe"
)

// marker is data of this binary: the exe mappings it is in (file offset
// minus address) are the running binary's.
const marker = "prefault"

// madvPopulateRead is MADV_POPULATE_READ (Linux 5.14).
const madvPopulateRead = 22

func init() {
	if daemon() {
		return
	}
	populateExe()
}

// daemon reports whether this process is `reconciled run`: argv[1] is
// run (not `reconciled runtime run`, whose argv[1] is runtime).
func daemon() bool {
	var buf [64]byte
	data := readFile("/proc/self/cmdline", buf[:])
	// argv[0] NUL argv[1] NUL
	i := 0
	for i < len(data) && data[i] != 0 {
		i++
	}
	if i >= len(data) {
		return false
	}
	arg := data[i+1:]
	return len(arg) >= 4 && string(arg[:4]) == "run\x00"
}

// populateExe maps in the mappings of /proc/self/exe that hold the running
// binary.
func populateExe() {
	var st syscall.Stat_t
	if syscall.Stat("/proc/self/exe", &st) != nil {
		return
	}
	var buf [16 << 10]byte
	populate(readFile("/proc/self/maps", buf[:]), st.Ino, uint64(uintptr(unsafe.Pointer(unsafe.StringData(marker)))))
}

// populate maps in the pages of the mappings in maps (/proc/self/maps:
// "start-end perms offset dev inode path" lines) of inode ino that belong
// to the same ELF image as the one address at lies in: their address
// minus their file offset is the same.
func populate(maps []byte, ino, at uint64) {
	var delta uint64
	found := false
	lines(maps, func(line []byte) {
		if m, ok := parseLine(line, ino); ok && !found && m.lo <= at && at < m.hi {
			delta, found = m.lo-m.off, true
		}
	})
	if !found {
		return
	}
	lines(maps, func(line []byte) {
		if m, ok := parseLine(line, ino); ok && m.lo-m.off == delta {
			syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), madvPopulateRead)
		}
	})
}

// lines calls f with each line of data.
func lines(data []byte, f func([]byte)) {
	for len(data) > 0 {
		end := 0
		for end < len(data) && data[end] != '\n' {
			end++
		}
		f(data[:end])
		if end < len(data) {
			end++
		}
		data = data[end:]
	}
}

// readFile reads what of path fits in buf.
func readFile(path string, buf []byte) []byte {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		n += k
	}
	return buf[:n]
}

// mapping is a line of /proc/self/maps: addresses lo to hi, from the file
// at offset off.
type mapping struct{ lo, hi, off uint64 }

// parseLine parses a line of /proc/self/maps of a mapping of inode ino.
func parseLine(line []byte, ino uint64) (mapping, bool) {
	var f [5][]byte
	i := 0
	for k := range f {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		s := i
		for i < len(line) && line[i] != ' ' {
			i++
		}
		f[k] = line[s:i]
	}
	if v, ok := dec(f[4]); !ok || v != ino {
		return mapping{}, false
	}
	lo, rest, ok := hex(f[0])
	if !ok || len(rest) == 0 || rest[0] != '-' {
		return mapping{}, false
	}
	hi, rest, ok := hex(rest[1:])
	if !ok || len(rest) != 0 || hi <= lo {
		return mapping{}, false
	}
	off, rest, ok := hex(f[2])
	if !ok || len(rest) != 0 {
		return mapping{}, false
	}
	return mapping{lo, hi, off}, true
}

func hex(b []byte) (uint64, []byte, bool) {
	var v uint64
	i := 0
	for ; i < len(b) && i < 16; i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return v, b[i:], i > 0
		}
	}
	return v, b[i:], i > 0
}

// dec parses b as a decimal number.
func dec(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}
