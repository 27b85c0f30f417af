package reconciler

import (
	"context"
	"errors"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// Executor is what the loop needs from the container runtime. IDs are
// container names.
type Executor interface {
	// Create creates container id from spec, not started.
	Create(ctx context.Context, id string, spec *specs.Spec) error
	// Start starts a created container's process.
	Start(ctx context.Context, id string) error
	// Kill sends sig to the container's init, or with all to every process
	// in its cgroup (frozen ones included).
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	// Wait returns nil once the container's init has exited (at once if it
	// already has), or ctx's error.
	Wait(ctx context.Context, id string) error
	// Delete removes a container that is not running: its state and cgroup.
	Delete(ctx context.Context, id string) error
	// Update sets the resources of a live container's cgroup.
	Update(ctx context.Context, id string, r *specs.LinuxResources) error
}

// CreateStarter is an Executor that can create a container and start it
// in one call, sooner than Create then Start: the loop uses it where a
// create is followed by a start at once. created reports whether the
// create succeeded: an error then is the start's.
type CreateStarter interface {
	CreateStart(ctx context.Context, id string, spec *specs.Spec) (created bool, err error)
}

// Observer says what is there (package actual's observer).
type Observer interface {
	// Observe returns every container reconciled created.
	Observe(ctx context.Context) (actual.Set, error)
}

// Invalidator is an Observer that caches what it observes: Invalidate
// makes its next Observe read container name afresh. The loop invalidates a
// container before it plans that container's actions, so that nothing is
// done to it from a stale observation, however long the cache keeps one.
type Invalidator interface {
	Invalidate(name string)
}

// OneObserver is an Observer that can also observe one container alone:
// the loop then plans a container it works on from that container's
// observation, not every container's (which made a converge of n
// containers n² observations and plans).
type OneObserver interface {
	// ObserveOne returns container name as Observe would, nil when there
	// is none.
	ObserveOne(ctx context.Context, name string) (*actual.Container, error)
}

// Recorder keeps each container's actual.Record where the Observer reads it
// back (written atomically: temp file, fsync, rename).
type Recorder interface {
	// Record replaces container name's record.
	Record(ctx context.Context, name string, r actual.Record) error
	// Forget removes it; a missing record is not an error.
	Forget(ctx context.Context, name string) error
}

// Images completes the wanted definitions of containers that run an image
// (desired.Container.Image set) before they are planned.
type Images interface {
	// Resolve returns want completed from its image (see
	// desired.Container.WithImage) when the image is stored and may be
	// used as want's pull policy says, or else a copy of want whose
	// ImageWait (and ImageFailed) says why not. In that case it starts
	// the pull that is needed and asks for the container to be looked at
	// again (Loop.Notify) when the pull ends. have is the container as
	// observed, nil when there is none: it runs the digest it was created
	// from. Resolve must not wait for the network.
	Resolve(ctx context.Context, want *desired.Container, have *actual.Container) *desired.Container
}

// ErrTerminal marks an error that retrying cannot fix (check with
// errors.Is): the container is not retried on its own, only looked at again
// on the next event or resync.
var ErrTerminal = errors.New("not retried")
