package prefault

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rss is the Rss, in KiB, of the mapping at addr in /proc/self/smaps.
func rss(t *testing.T, addr uintptr) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, _, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			v, err := strconv.ParseUint(lo, 16, 64)
			in = err == nil && uintptr(v) == addr
			continue
		}
		if in && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", addr)
	return 0
}

// Two mappings of one file, untouched, as the kernel's mapping of
// reconciled and the stage binary's (executor's shippedEntry) lie in a
// container stage: populate maps in every page of the one the address
// given lies in, none of the other, and none of a line of another inode.
func TestPopulate(t *testing.T) {
	const size = 4 << 20
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, make([]byte, 2*size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	mmap := func(off int64) uintptr {
		mem, err := unix.Mmap(int(f.Fd()), off, size, unix.PROT_READ, unix.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(mem) })
		return uintptr(unsafePointer(mem))
	}
	head, stage := mmap(0), mmap(size)
	for _, a := range []uintptr{head, stage} {
		if n := rss(t, a); n != 0 {
			t.Fatalf("Rss %d KiB before: want untouched mappings", n)
		}
	}
	line := func(addr uintptr, off int64, ino uint64) string {
		return fmt.Sprintf("%x-%x r--p %08x fe:00 %d                    %s\n", addr, addr+size, off, ino, path)
	}
	maps := line(head, 0, st.Ino) + line(stage, size, st.Ino)
	populate([]byte(line(stage, size, st.Ino+1)), st.Ino, uint64(stage)+100)
	if n := rss(t, stage); n != 0 {
		t.Errorf("Rss %d KiB after a line of another inode, want 0", n)
	}
	populate([]byte(maps), st.Ino, uint64(stage)+100)
	if n := rss(t, stage); n != size>>10 {
		t.Errorf("Rss %d KiB of the mapping the address is in, want %d", n, size>>10)
	}
	if n := rss(t, head); n != 0 {
		t.Errorf("Rss %d KiB of the other image's mapping, want 0", n)
	}
}

func TestParsers(t *testing.T) {
	if v, rest, ok := hex([]byte("00400000-00f01000")); !ok || v != 0x400000 || string(rest) != "-00f01000" {
		t.Errorf("hex = %#x %q %v", v, rest, ok)
	}
	if _, _, ok := hex([]byte("-1")); ok {
		t.Error("hex of no digit: ok")
	}
	if v, ok := dec([]byte("395806")); !ok || v != 395806 {
		t.Errorf("dec = %d %v", v, ok)
	}
	for _, bad := range []string{"", "12a", "99999999999999999999"} {
		if _, ok := dec([]byte(bad)); ok {
			t.Errorf("dec(%q): ok", bad)
		}
	}
}
