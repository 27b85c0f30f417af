package ociruntime

import "errors"

// Sentinel errors, checked with errors.Is. The native executor's
// ErrNotExist, ErrExist and ErrNotRunning are returned for the same
// conditions here.
var (
	// ErrRuntimeNotFound: the runtime binary is missing or not executable.
	ErrRuntimeNotFound = errors.New("runtime binary not found")
	// ErrRuntimeFailed: the runtime binary ran and reported a failure.
	ErrRuntimeFailed = errors.New("runtime command failed")
	// ErrNotOurs: the container was created by another runtime.
	ErrNotOurs = errors.New("container belongs to another runtime")
)
