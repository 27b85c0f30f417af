package executor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/internal/rootfs"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/sys"
)

// mntTemplate is a Runtime's mount namespace template (rootfs.MakeTemplate):
// a runner init of a Runtime with spares leaves the host's mount namespace
// for it and unshares a copy, and the setup attaches the rootfs over the
// copy's root instead of pivoting into it. Only a long-lived Runtime makes
// one: a CLI that creates one container would pay for the template what
// the container saves.
type mntTemplate struct {
	once   sync.Once
	mu     sync.Mutex
	ns     *os.File
	closed bool
}

// close closes the template's namespace (Runtime.Close): template returns
// nil from then on.
func (t *mntTemplate) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.ns != nil {
		t.ns.Close()
		t.ns = nil
	}
}

// template returns the template's mount namespace, nil where this Runtime
// does not use one (no spares; or the kernel refused it, logged once; or
// the Runtime is closed).
func (r *Runtime) template() *os.File {
	if r.spares == nil {
		return nil
	}
	r.tmpl.once.Do(func() {
		type result struct {
			f   *os.File
			err error
		}
		done := make(chan result, 1)
		// The thread leaves the host's mount namespace: it ends with f.
		sys.GoOwnThread(func() {
			f, err := rootfs.MakeTemplate()
			done <- result{f, err}
		})
		res := <-done
		if res.err != nil {
			r.log.Warn("containers are set up with pivot_root: no mount namespace template", "err", res.err)
			return
		}
		r.tmpl.mu.Lock()
		defer r.tmpl.mu.Unlock()
		if r.tmpl.closed {
			res.f.Close()
			return
		}
		r.tmpl.ns = res.f
	})
	r.tmpl.mu.Lock()
	defer r.tmpl.mu.Unlock()
	return r.tmpl.ns
}

// fromTemplate reports whether the runner init of a container of spec
// starts in a copy of the template (rootfs.FromTemplate).
func (r *Runtime) fromTemplate(spec *specs.Spec, bundle string) bool {
	if r.spares == nil {
		return false
	}
	if ok, _ := rootfs.FromTemplate(spec, bundle); !ok {
		return false
	}
	return r.template() != nil
}

// enterTemplate has the runner init leave the host's mount namespace for
// the template's (the descriptor in fd slot fd, closed after) and unshare
// a copy of it: a mount namespace of its own whose one mount is an empty
// read-only tmpfs.
func enterTemplate(p *waiter.Program, fd int) {
	p.Call("container init: join the mount namespace template: setns", unix.SYS_SETNS, waiter.Slot(waiter.FdSlot(fd)), waiter.Imm(unix.CLONE_NEWNS))
	p.Call("container init: close: close", unix.SYS_CLOSE, waiter.Slot(waiter.FdSlot(fd)))
	p.Call("container init: unshare(CLONE_NEWNS)", unix.SYS_UNSHARE, waiter.Imm(unix.CLONE_NEWNS))
}

// chrootChunk has the runner init make the container's root (the
// descriptor in fd slot fd, attached over its namespace's root by the
// setup) its root and working directory, as pivot_root would have.
func chrootChunk(p *waiter.Program, fd int) {
	p.Call("container init: enter the root: fchdir", unix.SYS_FCHDIR, waiter.Slot(waiter.FdSlot(fd)))
	p.Call("container init: enter the root: chroot", unix.SYS_CHROOT, p.String("."))
	p.Call("container init: close: close", unix.SYS_CLOSE, waiter.Slot(waiter.FdSlot(fd)))
}

// joinOwnMountNamespace has this thread (unshare(CLONE_FS) done) join the
// mount namespace of the runner init pid, after checking that it is no
// longer this process's: an init that had not yet made its own from the
// template would have the setup attach the rootfs over the host's "/".
func joinOwnMountNamespace(pid int) error {
	// A bare descriptor: an os.File would cost five more system calls
	// (its poller) on a create's path.
	ns, err := sys.Openat(unix.AT_FDCWD, "/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("the container init's mount namespace: %w", err)
	}
	defer unix.Close(ns)
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(ns, &theirs); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if err := unix.Stat("/proc/self/ns/mnt", &ours); err != nil {
		return os.NewSyscallError("stat", err)
	}
	if theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return errors.New("the container init is still in the runtime's mount namespace: it did not make its own from the template")
	}
	if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the container init's mount namespace: %w", os.NewSyscallError("setns", err))
	}
	return nil
}
