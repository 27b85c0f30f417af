package sys

import (
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	// TestMain runs on the main thread (locked in an init function, the
	// main goroutine stays there).
	runtime.LockOSThread()
}

// fromMain is what OnOwnThread did when called on the main thread: the
// caller's thread and f's.
var fromMain struct{ caller, f, goF int }

func TestMain(m *testing.M) {
	runSchedHelper()
	fromMain.caller = unix.Gettid()
	OnOwnThread(func() { fromMain.f = unix.Gettid() })
	done := make(chan int)
	GoOwnThread(func() { done <- unix.Gettid() })
	fromMain.goF = <-done
	os.Exit(m.Run())
}

// OnOwnThread and GoOwnThread never run f on the main thread, even when
// called there, and f's thread ends with f.
func TestOnOwnThread(t *testing.T) {
	pid := unix.Getpid()
	if fromMain.caller != pid {
		t.Fatalf("TestMain ran on thread %d, not the main thread %d", fromMain.caller, pid)
	}
	tids := []int{fromMain.f, fromMain.goF}
	for i := 0; i < 10; i++ {
		OnOwnThread(func() { tids = append(tids, unix.Gettid()) })
	}
	// GoOwnThread is the same without the wait: f says when it is done.
	done := make(chan int)
	for i := 0; i < 10; i++ {
		GoOwnThread(func() { done <- unix.Gettid() })
		tids = append(tids, <-done)
	}
	for _, tid := range tids {
		if tid == pid || tid == 0 {
			t.Fatalf("f ran on thread %d (the main thread is %d)", tid, pid)
		}
		// The thread exits just after f's goroutine has told the caller.
		deadline := time.Now().Add(5 * time.Second)
		for unix.Tgkill(pid, tid, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("thread %d is still there 5 s after f returned", tid)
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}
