package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"reconciled.dev/reconciled/executor"
)

func init() {
	register(&command{
		name:       "version",
		summary:    "print the version and the git revision it was built from (also --version)",
		run:        runVersion,
		ownSignals: true, // nothing to undo
	})
}

// version may be set at link time (-ldflags "-X main.version=1.4.0", as a
// release build would); otherwise it is the module version the go command
// recorded, or "devel".
var version string

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version", stderr)
	if _, ok := parseArgs(fs, args, 0, 0); !ok {
		return 2
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(version, bi))
	fmt.Fprintln(stdout, stagesText(executor.StageInfo("/proc/self/exe")))
	return 0
}

// stagesText is the line `reconciled version` ends with: which binary runs
// the container monitors, inits and exec'd processes, `reconciled runtime`
// and reconciled-runc (executor/stage.go).
func stagesText(size int64, err error) string {
	const what = "container stages, runtime, reconciled-runc: "
	switch {
	case err == nil:
		return fmt.Sprintf(what+"the lean build appended (%.1f MiB)", float64(size)/(1<<20))
	case executor.IsNoStage(err):
		return what + "this binary (nothing appended: built without packaging/build.sh)"
	default:
		return what + "this binary (the appended build is unusable: " + err.Error() + ")"
	}
}

// versionText is what `reconciled version` prints:
//
//	reconciled 1.4.0
//	git revision 42b0e86c0ad1f3e0c1bd7f8d2a5a30b9e9e8c7d1 (modified)
//	go1.26.8 linux/amd64
//
// The revision and whether the tree had uncommitted changes are what the go
// command recorded (vcs.revision, vcs.modified: a build inside a git
// checkout); "unknown" when it recorded none (go test, -buildvcs=false, a
// source tarball).
func versionText(linked string, bi *debug.BuildInfo) string {
	v, rev, modified := linked, "", false
	if bi != nil {
		if v == "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if rev == "" {
		rev = "unknown"
	} else if modified {
		rev += " (modified)"
	}
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("reconciled %s\ngit revision %s\n%s %s/%s\n", v, rev, goVersion, runtime.GOOS, runtime.GOARCH)
}
