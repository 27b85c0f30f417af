package e2e

import (
	"fmt"
	"testing"
	"time"
)

// A container whose root is the host's does not see the daemon's state
// (every container's state.json, the status socket), logs or images: each
// is masked by an empty read-only tmpfs (containment issue, item 1).
func TestHostRootHidesDaemonDirs(t *testing.T) {
	e := newEnv(t)
	name := e.name("peek")
	script := fmt.Sprintf("for d in %s %s %s; do echo \"$d: $(ls -A $d | wc -l)\"; done; touch %s/x 2>&1; exec sleep 1000",
		e.state, e.logDir, e.images, e.state)
	// As root inside: the daemon's directories are root's, so a root
	// process would read them were they not masked.
	e.write("peek.yaml", fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\n"+
		"spec:\n  root: {path: /, readonly: true}\n  command: [/bin/sh, -c, %q]\n  user: \"0:0\"\n  stop: {signal: SIGKILL}\n", name, script))
	e.start()
	e.waitRunning(name, 30*time.Second)
	for _, d := range []string{e.state, e.logDir, e.images} {
		e.waitLogs(name, d+": 0\n")
	}
	e.waitLogs(name, "Read-only file system")
}
