// Package reconciler decides what to do about the containers and does it.
//
// Its core is a pure planner: Plan takes the desired state (package desired),
// the observed state (package actual) and the current time and returns, for
// every container, an ordered sequence of actions (create, start, stop,
// delete, update in place, wait until), each with a reason in words a person
// understands, and the container's status. The planner does no I/O, reads no
// clock and starts no goroutine: the same input always gives the same plan,
// so every transition is a table test.
//
// The loop (Loop) moves values between the edges: it observes, plans and
// hands each container's actions to the executor, one container's sequence
// at a time, a bounded number of containers at once. It declares the small
// interfaces it needs (Executor, Observer, Recorder) and is handed their
// implementations; it must not import the executor, and nothing in this
// package may read files or make syscalls itself.
package reconciler
