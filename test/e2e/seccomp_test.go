package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil"
)

// Through the daemon: a container gets Docker's default profile unless its
// manifest says `seccomp: unconfined` or names a profile file
// (containment issue, item 2).
func TestSeccompManifest(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	testutil.InstallSysProbe(t, rootfs)
	profile := filepath.Join(e.dir, "personality.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "grep Seccomp: /proc/self/status; sleep 100 & /sysprobe keyctl unshare-user ptrace:$! personality:0 personality:4; kill $!; exec sleep 1000"
	containers := map[string]string{"default": "", "unconfined": "  seccomp: unconfined\n", "file": "  seccomp: " + profile + "\n"}
	for n, field := range containers {
		e.write(n+".yaml", fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\n"+
			"spec:\n  root: {path: %s, readonly: true}\n  command: [/bin/sh, -c, %q]\n  user: \"0:0\"\n  stop: {signal: SIGKILL}\n%s",
			e.name(n), rootfs, script, field))
	}
	e.start()
	for n := range containers {
		e.waitRunning(e.name(n), 30*time.Second)
	}
	for _, text := range []string{"Seccomp:\t2\n", "keyctl=EPERM\n", "unshare-user=EPERM\n", "ptrace:", "personality:0=ok\n", "personality:4=EPERM\n"} {
		e.waitLogs(e.name("default"), text)
	}
	e.waitLogs(e.name("default"), "=EPERM\npersonality:0") // ptrace's line, whose key holds a PID
	for _, text := range []string{"Seccomp:\t0\n", "keyctl=ok\n", "personality:4=ok\n"} {
		e.waitLogs(e.name("unconfined"), text)
	}
	for _, text := range []string{"Seccomp:\t2\n", "keyctl=ok\n", "personality:0=ok\n", "personality:4=EACCES\n"} {
		e.waitLogs(e.name("file"), text)
	}
}
