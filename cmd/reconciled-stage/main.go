// Command reconciled-stage is the container monitor, init and exec stages
// of reconciled on their own: the executor's re-exec stages without the
// CLI, the daemon, the image store and their dependencies. packaging/build.sh
// appends it to the reconciled binary, which execs it (from a sealed memfd)
// instead of itself for those stages: a Go process starts in about half
// the time when it initializes half the packages (measured on a 2-core VM,
// 8.2 ms instead of 13.9 for a start that does nothing). It is not a
// command for users: run outside a stage it says so and exits 2.
package main

import (
	"os"

	"reconciled.dev/reconciled/executor"
	// Maps the executable in at the start (see the package).
	_ "reconciled.dev/reconciled/internal/prefault"
)

func main() {
	executor.MaybeRunStage()
	os.Stderr.WriteString("reconciled-stage: not a command: reconciled runs it for a container's monitor, init and exec\n")
	os.Exit(2)
}
