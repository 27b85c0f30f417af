// Package actual says what is really there: for every container that
// reconciled created under its own state root, the executor's recorded state
// checked against the kernel (is the init PID alive and is it still the same
// process, does the cgroup still hold processes), and the small record the
// daemon keeps beside it (the definition it was created from, restart and
// failure counts, a stop under way).
//
// Its value types (Container, Record, Set) are plain data, read by the
// planner in package reconciler. Store is the I/O edge: it reads the
// executor's state files under one root and the containers' /proc and cgroup
// entries (Observe), and writes the records atomically (Record, Forget).
// A record on disk has its own versioned format (record.go: EncodeRecord,
// DecodeRecord), not the encoding of desired.Container: a release reads what
// the releases before it wrote (testdata/records-v0).
//
// It must not import reconciler, nor desired beyond its value types, nor
// decide anything: what to do about a container is the planner's job. It
// never considers a container that reconciled did not create (only the
// executor root it is given is listed), and it never changes a container.
package actual
