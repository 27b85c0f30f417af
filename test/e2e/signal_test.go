package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A real-time stop signal reaches the container: removing the manifest
// sends it, the init's trap exits, and the container is gone long before
// the stop timeout (30s) would have SIGKILLed it. The shell traps the
// number, not "RTMIN+3": busybox sh knows no real-time names and a musl
// shell counts them from 35; the number is what the kernel delivers.
func TestStopRealtimeSignal(t *testing.T) {
	e := newEnv(t)
	e.start()
	type stopCase struct {
		file, name, signal string
		num                int // what SIGNAL is, as the kernel delivers it
	}
	cases := []stopCase{
		{file: "rtmin3.yaml", name: e.name("rtmin3"), signal: "SIGRTMIN+3", num: 37},
		{file: "rtmax1.yaml", name: e.name("rtmax1"), signal: "SIGRTMAX-1", num: 63},
		{file: "num40.yaml", name: e.name("num40"), signal: `"40"`, num: 40},
	}
	for _, c := range cases {
		command := fmt.Sprintf("trap 'echo got %d; exit 0' %d; echo ready; sleep 100000 & wait", c.num, c.num)
		e.write(c.file, fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /, readonly: true}
  command: ["/bin/sh", "-c", %q]
  user: "65534:65534"
  stop: {signal: %s, timeout: 30s}
`, c.name, command, c.signal))
	}
	pids := map[string]int{}
	for _, c := range cases {
		pids[c.name] = e.waitRunning(c.name, 30*time.Second).Pid
		e.waitLogs(c.name, "ready") // the trap is set
	}
	start := time.Now()
	for _, c := range cases {
		if err := os.Remove(filepath.Join(e.manifests, c.file)); err != nil {
			t.Fatal(err)
		}
	}
	gone := map[string]time.Duration{}
	e.waitFor("every container stopped by its signal", 45*time.Second, func(r *report) bool {
		for _, c := range cases {
			if _, ok := gone[c.name]; !ok && r.Get(c.name) == nil {
				gone[c.name] = time.Since(start)
			}
		}
		return len(gone) == len(cases)
	})
	for _, c := range cases {
		if d := gone[c.name]; d >= 10*time.Second {
			t.Errorf("stop.signal %s: %s took %s to stop (timeout 30s): the signal did not stop it", c.signal, c.name, d.Round(time.Millisecond))
		}
		if alive(pids[c.name]) {
			t.Errorf("%s: pid %d still runs", c.name, pids[c.name])
		}
		want := fmt.Sprintf("got %d", c.num)
		data, err := os.ReadFile(filepath.Join(e.logDir, c.name+".log"))
		if err != nil || !strings.Contains(string(data), want) {
			t.Errorf("stop.signal %s: the trap of %d did not run (log %q, %v)", c.signal, c.num, data, err)
		}
	}
}
