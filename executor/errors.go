package executor

import (
	"errors"
	"fmt"
)

// Sentinel errors, checked with errors.Is. Every error the Runtime returns
// for one of these conditions wraps the matching sentinel.
var (
	// ErrExist: a container with this ID is already in the state root.
	ErrExist = errors.New("container already exists")
	// ErrNotExist: no container with this ID in the state root.
	ErrNotExist = errors.New("container does not exist")
	// ErrRunning: the operation needs a stopped (or created) container.
	ErrRunning = errors.New("container is still running")
	// ErrNotRunning: the operation needs a live (created or running) container.
	ErrNotRunning = errors.New("container is not running")
	// ErrInvalidID: the ID is not usable as a container ID.
	ErrInvalidID = errors.New("invalid container ID")
	// ErrNotSupported: the spec asks for something this runtime does not do.
	ErrNotSupported = errors.New("not supported")
	// ErrPaused: the operation needs a container that is not paused.
	ErrPaused = errors.New("container is paused")
	// ErrBadState: the container's state (or exit record) cannot be
	// parsed: truncated, or written by something else. Delete with force
	// still removes the container, finding it through its cgroup.
	ErrBadState = errors.New("container state is unreadable")
	// ErrCgroupInUse: a new container's cgroup exists and is frozen or
	// holds processes; it is never joined.
	ErrCgroupInUse = errors.New("cgroup in use")
)

// StateTransitionError says that an operation found the container in a
// status it cannot act on. It wraps ErrRunning or ErrNotRunning where one of
// them applies.
type StateTransitionError struct {
	ID   string
	Op   string // "start", "kill", "delete"
	From Status
}

func (e *StateTransitionError) Error() string {
	return fmt.Sprintf("cannot %s container %s: it is %s", e.Op, e.ID, e.From)
}

func (e *StateTransitionError) Unwrap() error {
	switch e.From {
	case StatusRunning:
		return ErrRunning
	case StatusStopped:
		return ErrNotRunning
	case StatusCreating:
		if e.Op == "start" || e.Op == "kill" {
			return ErrNotRunning
		}
	case StatusCreated:
		if e.Op == "start" {
			return nil
		}
	}
	return nil
}

// HookError says that a lifecycle hook failed.
type HookError struct {
	Kind  string // "prestart", "createRuntime", ...
	Index int
	Path  string
	Err   error
}

func (e *HookError) Error() string {
	// "error running hook" is runc's wording, which tools and runc's tests
	// look for.
	return fmt.Sprintf("%s hook #%d (%s): error running hook: %v", e.Kind, e.Index, e.Path, e.Err)
}

func (e *HookError) Unwrap() error { return e.Err }

// ValidateID returns an error wrapping ErrInvalidID unless id is 1 to 128
// characters of [A-Za-z0-9_.-], does not start with '.' and contains no "..".
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > 128 {
		return fmt.Errorf("%w %q: length must be 1 to 128", ErrInvalidID, id)
	}
	if id[0] == '.' {
		return fmt.Errorf("%w %q: must not start with '.'", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '.':
			if i+1 < len(id) && id[i+1] == '.' {
				return fmt.Errorf("%w %q: must not contain \"..\"", ErrInvalidID, id)
			}
		default:
			return fmt.Errorf("%w %q: only [A-Za-z0-9_.-] allowed", ErrInvalidID, id)
		}
	}
	return nil
}
