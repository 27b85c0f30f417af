package systemde2e

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/test/systemdtest"
)

// ConvergeBenchArgsEnv holds extra convergebench flags for
// BenchmarkConvergeSystemd, appended after its defaults (a later flag
// wins): RECONCILED_CONVERGEBENCH_ARGS="-n 1000 -idle 30s"; with
// "-cgroup-driver cgroupfs" the same sandbox runs the cgroupfs driver, a
// baseline for what systemd adds.
const ConvergeBenchArgsEnv = "RECONCILED_CONVERGEBENCH_ARGS"

// Paths inside the sandbox: its /run and /tmp are private tmpfs that
// vanish with it (its /dev/shm is the host's, so convergebench's default
// -state-in is not used).
const (
	benchBinDir = "/run/convergebench/bin"
	benchWork   = "/tmp/convergebench"
	benchState  = "/run"
)

// BenchmarkConvergeSystemd runs bench/convergebench with the systemd cgroup
// driver, what `reconciled run --cgroup-driver auto` picks on a host whose
// PID 1 is systemd: the daemon, its containers and convergebench run inside
// a sandboxed systemd (test/systemdtest), each container in a transient
// scope of reconciled.slice. It runs the whole benchmark once, whatever
// b.N, streams convergebench's report to stdout and reports its main
// figures as metrics (ms). Run it with bench/converge.sh -systemd, or
//
//	go test -run '^$' -bench BenchmarkConvergeSystemd -benchtime 1x -timeout 60m ./test/systemd_e2e/
//
// with extra convergebench flags in RECONCILED_CONVERGEBENCH_ARGS. The
// sandbox's cleanup kills whatever is left in it and removes its cgroups,
// also when the benchmark fails.
func BenchmarkConvergeSystemd(b *testing.B) {
	if systemdtest.Inside() {
		b.Skip("BenchmarkConvergeSystemd starts its own sandbox")
	}
	ctx, cancel := benchContext()
	defer cancel()

	// Built out here, static, as shipped; CopyIn writes each as a fresh
	// file in the sandbox's /run, as an install does (see bench/converge.sh).
	dir := b.TempDir()
	bins := map[string]string{
		"reconciled":    "reconciled.dev/reconciled/cmd/reconciled",
		"convergebench": "reconciled.dev/reconciled/bench/convergebench",
	}
	for name, pkg := range bins {
		if name == "reconciled" { // as make build builds it
			if err := testutil.BuildShipped(ctx, filepath.Join(dir, name), ""); err != nil {
				b.Fatal(err)
			}
			continue
		}
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}

	sb := systemdtest.Start(b)
	for name := range bins {
		if err := sb.CopyIn(filepath.Join(dir, name), filepath.Join(benchBinDir, name)); err != nil {
			b.Fatalf("copying %s into sandbox %s: %v", name, sb.Name, err)
		}
	}

	args := []string{
		"-reconciled", filepath.Join(benchBinDir, "reconciled"),
		"-cgroup-driver", "systemd",
		"-runtimes", "none",
		"-work", benchWork,
		"-state-in", benchState,
		"-n", "200", "-drops", "100", "-drops-loaded", "50", "-idle", "10s",
	}
	args = append(args, strings.Fields(os.Getenv(ConvergeBenchArgsEnv))...)
	b.Logf("in sandbox %s: convergebench %s", sb.Name, strings.Join(args, " "))

	var out bytes.Buffer
	cmd := sb.Command(ctx, filepath.Join(benchBinDir, "convergebench"), args...)
	cmd.Stdout = io.MultiWriter(os.Stdout, &out)
	cmd.Stderr = cmd.Stdout
	// Killing nsenter on ctx's end leaves convergebench to the sandbox's
	// cleanup; do not wait for its end of the pipe.
	cmd.WaitDelay = 10 * time.Second
	b.ResetTimer()
	err := cmd.Run()
	b.StopTimer()
	if err != nil {
		tail, _ := sb.Exec(context.Background(), "tail", "-n", "60", filepath.Join(benchWork, "daemon.log"))
		b.Fatalf("convergebench in sandbox %s: %v\ndaemon.log (last 60 lines):\n%s", sb.Name, err, tail)
	}
	if want := driverArg(args); !strings.Contains(out.String(), ": cgroup driver "+want+"\n") {
		b.Errorf("convergebench does not report the %s cgroup driver in use:\n%s", want, out.String())
	}

	// convergebench removed every container it made: no scope is active
	// and no container cgroup is left in the sandbox's tree (the sandbox's
	// cleanup then removes the tree itself).
	if units, err := sb.Exec(ctx, "systemctl", "list-units", "--state=active", "--no-legend", "--plain", cgroups.DefaultScopePrefix+"-*.scope"); err != nil {
		b.Errorf("systemctl list-units: %v\n%s", err, units)
	} else if s := strings.TrimSpace(string(units)); s != "" {
		b.Errorf("scopes still active after convergebench:\n%s", s)
	}
	for _, d := range sb.Dirs() {
		for _, pattern := range []string{filepath.Join(d, cgroups.DefaultSlice, "*.scope"), filepath.Join(d, cgroups.DefaultParent, "*")} {
			left, _ := filepath.Glob(pattern)
			for _, l := range left {
				if fi, err := os.Stat(l); err == nil && fi.IsDir() {
					b.Errorf("container cgroup left after convergebench: %s", l)
				}
			}
		}
	}

	reportFigures(b, out.String())
}

// driverArg is the driver the daemon should report for the last
// -cgroup-driver in args (a later flag wins): systemd unless
// ConvergeBenchArgsEnv names cgroupfs (to compare in the same sandbox);
// auto is systemd here, where systemd is PID 1.
func driverArg(args []string) string {
	driver := ""
	for i, a := range args {
		a = strings.TrimPrefix(a, "-")
		switch {
		case a == "-cgroup-driver" || a == "cgroup-driver":
			if i+1 < len(args) {
				driver = args[i+1]
			}
		case strings.HasPrefix(a, "cgroup-driver="), strings.HasPrefix(a, "-cgroup-driver="):
			_, driver, _ = strings.Cut(a, "=")
		}
	}
	if driver == "auto" {
		return "systemd"
	}
	return driver
}

// benchContext ends 30 s before the test binary's -test.timeout, so that a
// benchmark that runs too long fails with the sandbox's cleanup rather
// than a timeout panic that skips it.
func benchContext() (context.Context, context.CancelFunc) {
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok && d > time.Minute {
				return context.WithTimeout(context.Background(), d-30*time.Second)
			}
		}
	}
	return context.WithCancel(context.Background())
}

// figures are convergebench's report lines and the metrics taken from
// them, in ms.
var figures = []struct {
	re    *regexp.Regexp
	units []string
}{
	{regexp.MustCompile(`(?m)^drop to running \(\d+, one at a time\): p50 ([\d.]+) ms  p99 ([\d.]+) ms`), []string{"drop-p50-ms", "drop-p99-ms"}},
	{regexp.MustCompile(`(?m)^drop to running with \d+ running \(\d+, one at a time\): p50 ([\d.]+) ms  p99 ([\d.]+) ms`), []string{"loaded-drop-p50-ms", "loaded-drop-p99-ms"}},
	{regexp.MustCompile(`(?m)^converge \d+ from empty: ([\d.]+) ms`), []string{"converge-ms"}},
	{regexp.MustCompile(`(?m)^adopt \d+ after a restart: ([\d.]+) ms`), []string{"adopt-ms"}},
	{regexp.MustCompile(`(?m)^remove \d+: ([\d.]+) ms`), []string{"remove-ms"}},
	{regexp.MustCompile(`(?m)^idle with \d+ running, over \S+: CPU ([\d.]+)% of one core`), []string{"idle-cpu-%"}},
}

// reportFigures reports convergebench's figures as benchmark metrics, in
// place of ns/op (one op is the whole benchmark).
func reportFigures(b *testing.B, report string) {
	b.ReportMetric(0, "ns/op")
	for _, f := range figures {
		m := f.re.FindStringSubmatch(report)
		if m == nil {
			continue // a phase turned off by a flag
		}
		for i, unit := range f.units {
			if v, err := strconv.ParseFloat(m[i+1], 64); err == nil {
				b.ReportMetric(v, unit)
			}
		}
	}
}
