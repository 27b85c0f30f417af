package sys

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// OnOwnThread runs f on an OS thread of its own, locked to f's goroutine
// and never unlocked, so that the thread ends when f returns: for work
// that leaves the thread changed (namespaces joined, CLONE_FS unshared, a
// cwd of its own). That thread is never the process's main thread: the Go
// runtime does not end the main thread with its goroutine but parks it
// for good, and /proc/self shows the main thread's namespaces, so a main
// thread left in a container's mount namespace would make
// /proc/self/ns/mnt name the container's, for the process's whole life.
func OnOwnThread(f func()) {
	done := make(chan struct{})
	go ownThread(f, done)
	<-done
}

// GoOwnThread is OnOwnThread without the wait: f runs on a thread of its
// own while the caller goes on, and tells the caller itself what it did.
// A caller that would only start a goroutine to wait in OnOwnThread saves
// the wake-up of that goroutine at each end (on a 2-core VM, each is 0.1-0.3
// ms when the other CPU is idle).
func GoOwnThread(f func()) {
	go ownThread(f, nil)
}

// ownThread runs f on the calling goroutine's thread, locked and never
// unlocked, and then closes done (when not nil).
func ownThread(f func(), done chan struct{}) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The main thread: held by this goroutine, so that the one
		// started here runs on another thread; then given back, as it
		// was never changed.
		held := make(chan struct{})
		go ownThread(f, held)
		<-held
		runtime.UnlockOSThread()
		if done != nil {
			close(done)
		}
		return
	}
	if done != nil {
		defer close(done)
	}
	f()
}
