package desired

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A file not read for a reason of the host's (EMFILE, ENOMEM, EIO) is no
// verdict on the manifest: its containers and its last content hash stay,
// the error is reported, and the Loader lists it for another read.
func TestNextUnreadKeepsLastContent(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, manifest("a", "1"))
	s1 := load(t, dir, Set{}, insecure)
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EIO} {
		err := &os.PathError{Op: "open", Path: a, Err: errno}
		if !resourceError(err) {
			t.Errorf("%v is not a resource error", errno)
		}
		f := File{Path: a, Name: "a.yaml", Err: &Error{File: "a.yaml", Msg: "unable to read: " + errno.Error()}, unread: true}
		s2 := Next(s1, &Snapshot{Files: []File{f}, dirs: map[string]dirInfo{dir: {abs: dir}}, volatile: []fileRef{{abs: a, real: a}}}, insecure)
		if s2.Containers["a"] != s1.Containers["a"] {
			t.Errorf("%v: container a not kept: %s", errno, describeSet(s2))
		}
		st := s2.Files[a]
		if st.ContentHash != s1.Files[a].ContentHash || len(st.Errors) != 1 || st.Errors[0].Msg != f.Err.Msg {
			t.Errorf("%v: status of a.yaml %+v", errno, st)
		}
		if paths, err := unreadFiles(&Snapshot{Files: []File{f}, dirs: map[string]dirInfo{dir: {abs: dir}}, volatile: []fileRef{{abs: a, real: a}}}); len(paths) != 1 || paths[0] != a || err == nil {
			t.Errorf("%v: unread %q, %v", errno, paths, err)
		}
	}
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.ELOOP, syscall.EISDIR} {
		if resourceError(&os.PathError{Op: "open", Path: a, Err: errno}) {
			t.Errorf("%v is a resource error", errno)
		}
	}
}

const emfileChildEnv = "RECONCILED_TEST_EMFILE_CHILD"

// Issue 14: a file the watcher could not read for want of file
// descriptors stayed "invalid: too many open files" until the next event
// or resync. Now its container stays wanted, the error shows in its
// FileStatus, and once descriptors are free the file is read again by
// itself: no event (they are dropped from then on), no resync (an hour).
// RLIMIT_NOFILE is the whole process's: the test runs in a child process
// of the test binary, which lowers its own limit below the descriptors it
// has open.
func TestWatchRereadsAfterEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "" {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestWatchRereadsAfterEMFILE$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestWatchRereadsAfterEMFILE") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "1"))
	var drop atomic.Bool
	var loads atomic.Int64
	w := startWatch(t, dir, WatchOptions{Resync: time.Hour, Debounce: 10 * time.Millisecond, dropEvents: &drop, loads: &loads})
	if s := w.next(2 * time.Second); arg(s, "a") != "1" {
		t.Fatalf("first: %s", describeSet(s))
	}
	// The writer's descriptor is opened first: it writes in place, the same
	// size, while no descriptor can be had.
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 3 // 0, 1 and 2 are open: no other descriptor can be had
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	lifted := false
	lift := func() {
		if !lifted {
			lifted = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer lift()
	if _, err := f.WriteAt([]byte(manifest("a", "2")), 0); err != nil {
		lift()
		t.Fatal(err)
	}
	s := w.next(5 * time.Second)
	drop.Store(true) // from here on, no event is seen
	n := loads.Load()
	lift()
	errs := s.Errors()
	if arg(s, "a") != "1" || len(errs) != 1 || !strings.Contains(errs[0].Error(), "too many open files") {
		t.Fatalf("while no descriptor could be had: %s %v", describeSet(s), errs)
	}
	if st := s.Files[file]; st == nil || len(st.Containers) != 1 || st.Containers[0] != "a" {
		t.Fatalf("status of a.yaml: %+v", st)
	}

	s = w.next(5 * time.Second)
	if arg(s, "a") != "2" || len(s.Errors()) != 0 {
		t.Fatalf("after the limit was lifted: %s %v", describeSet(s), s.Errors())
	}
	t.Logf("read again after %d loads", loads.Load()-n)
}
