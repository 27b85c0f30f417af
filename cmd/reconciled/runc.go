package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/specwarm"
	"reconciled.dev/reconciled/internal/statedir"
)

// runcName is the name under which the binary answers to runc's bare
// command line: `reconciled-runc --root X run -d ID` is `reconciled
// runtime --root X run -d ID`, so that engines (podman, containerd,
// docker) can call it as their OCI runtime. The name is kept in specwarm,
// where the executor's tests read it too.
const runcName = specwarm.RuncName

// runcGlobals are runc's global flags, given before the subcommand.
type runcGlobals struct {
	root, log, logFormat string
	debug, systemdCgroup bool
	version              bool
}

// addRuncGlobals declares runc's global flags on fs. --criu and
// --rootless are accepted and have no effect here: no checkpointing, and
// rootless mode is decided by the euid, as runc's "auto" does.
func addRuncGlobals(fs *flag.FlagSet) *runcGlobals {
	g := &runcGlobals{}
	fs.StringVar(&g.root, "root", executor.DefaultRoot, "directory for container state")
	fs.StringVar(&g.log, "log", "", "write the runtime's log to FILE instead of stderr")
	fs.StringVar(&g.logFormat, "log-format", "text", "the log's format: text or json")
	fs.BoolVar(&g.debug, "debug", false, "log debug messages too")
	fs.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "manage cgroups through systemd (cgroupsPath is slice:prefix:name)")
	fs.BoolVar(&g.version, "version", false, "print the version")
	fs.BoolVar(&g.version, "v", false, "same as --version")
	fs.String("criu", "criu", "accepted for runc compatibility; checkpoint/restore is not supported")
	fs.String("rootless", "auto", "accepted for runc compatibility; rootless mode follows the euid")
	return g
}

// logger returns the logger the globals ask for, and a func that closes
// its file.
func (g *runcGlobals) logger(stderr io.Writer) (*slog.Logger, func(), error) {
	w, closeLog := stderr, func() {}
	if g.log != "" {
		f, err := os.OpenFile(g.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--log: %w", err)
		}
		w, closeLog = f, func() { f.Close() }
	}
	level := slog.LevelWarn
	if g.debug {
		level = slog.LevelDebug
	}
	o := &slog.HandlerOptions{Level: level, ReplaceAttr: logrusLevel}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), closeLog, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), closeLog, nil
	}
	closeLog()
	return nil, nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

// logrusLevel writes the level as runc's logger (logrus) does, "debug",
// "info", "warning", "error": engines read runc's log by those names
// (containerd's go-runc takes the last "error" record's msg as the
// runtime's error), and runc's tests grep for level=debug.
func logrusLevel(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 || a.Key != slog.LevelKey {
		return a
	}
	if l, ok := a.Value.Any().(slog.Level); ok {
		switch {
		case l < slog.LevelInfo:
			return slog.String(a.Key, "debug")
		case l < slog.LevelWarn:
			return slog.String(a.Key, "info")
		case l < slog.LevelError:
			return slog.String(a.Key, "warning")
		default:
			return slog.String(a.Key, "error")
		}
	}
	return a
}

// options are the executor options the globals ask for.
func (g *runcGlobals) options(ctx context.Context, logger *slog.Logger) ([]executor.Option, error) {
	opts := []executor.Option{executor.WithLogger(logger)}
	if g.systemdCgroup {
		d, err := cgroups.NewSystemd(ctx, cgroups.WithSystemdLogger(logger))
		if err != nil {
			return nil, fmt.Errorf("--systemd-cgroup: %w", err)
		}
		opts = append(opts, executor.WithCgroups(d))
	}
	// A daemon's runtime root (STATE/runtime): its containers' cgroups
	// are under the daemon's own parent.
	if abs, err := filepath.Abs(g.root); err == nil && filepath.Base(abs) == "runtime" {
		if f := statedir.RecordedCgroupsPath(filepath.Dir(abs)); f != nil {
			opts = append(opts, executor.WithCgroupsPath(f))
		}
	}
	return opts, nil
}

// runcVersionText is `--version` in runc's shape (runc version X, commit:,
// spec:), which tools parse.
func runcVersionText(name string) string {
	bi, _ := debug.ReadBuildInfo()
	v, rev := version, "unknown"
	if bi != nil {
		if v == "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	if v == "" {
		v = "0.0.0-devel"
	}
	goVersion := ""
	if bi != nil {
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("%s version %s\ncommit: %s\nspec: %s\ngo: %s\n", name, strings.TrimPrefix(v, "v"), rev, specs.Version, goVersion)
}

// defaultSpec is `spec`'s config.json: runc 1.1's own default (busybox-
// ready: sh on a terminal, a read-only rootfs, three capabilities,
// masked and read-only /proc paths, every device denied).
func defaultSpec() *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: true,
			User:     specs.User{},
			Args:     []string{"sh"},
			Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "runc",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// rootlessSpec turns the default spec into runc spec --rootless's: a user
// namespace mapping root to the caller, no network namespace of its own
// is kept (runc keeps it; so do we), /sys bound from the host, no cgroup
// mount and no resources.
func rootlessSpec(s *specs.Spec) {
	s.Linux.Resources = nil
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: uint32(os.Geteuid()), ContainerID: 0, Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{HostID: uint32(os.Getegid()), ContainerID: 0, Size: 1}}
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/sys/fs/cgroup":
			continue
		case "/sys":
			m = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		}
		var opts []string
		for _, o := range m.Options {
			if !strings.HasPrefix(o, "gid=") {
				opts = append(opts, o)
			}
		}
		m.Options = opts
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
}

// runSpec is `spec [--bundle DIR] [--rootless]`: it writes DIR/config.json
// and refuses to overwrite one.
func runSpec(args []string, stderr io.Writer) error {
	fs := newFlagSet("runtime spec", "runtime spec [--bundle DIR] [--rootless]", stderr)
	bundle := fs.String("bundle", "", "write config.json in DIR instead of the current directory")
	fs.StringVar(bundle, "b", "", "same as --bundle")
	rootless := fs.Bool("rootless", false, "a spec for a container run by a non-root user")
	if _, ok := parseArgs(fs, args, 0, 0); !ok {
		return errUsage
	}
	s := defaultSpec()
	if *rootless {
		rootlessSpec(s)
	}
	path := filepath.Join(*bundle, "config.json")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("file %s exists: remove it first", path)
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o666)
}

// errUsage: the usage was printed; exit 2.
var errUsage = errors.New("usage")

// runcState is one container in runc's `state` and `list --format json`
// shape (the keys in runc's order).
type runcState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      executor.Status   `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     string            `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func toRuncState(s *executor.State) runcState {
	r := runcState{
		OCIVersion: s.OCIVersion, ID: s.ID, Status: executor.PausedStatus(s),
		Bundle: s.Bundle, Rootfs: s.Rootfs, Owner: "root", Annotations: s.Annotations,
	}
	if r.Status != executor.StatusStopped {
		r.Pid = s.Pid
	}
	if !s.Created.IsZero() {
		r.Created = s.Created.UTC().Format("2006-01-02T15:04:05.999999999Z")
	}
	return r
}

// features is `features`: what this runtime supports, in the runtime-spec
// features document's shape (features.md).
func features() map[string]any {
	return map[string]any{
		"ociVersionMin": "1.0.0",
		"ociVersionMax": specs.Version,
		"hooks":         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		"mountOptions": []string{"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "noatime",
			"nodev", "nodiratime", "noexec", "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate",
			"rshared", "rslave", "rw", "shared", "slave", "strictatime", "suid", "sync"},
		"linux": map[string]any{
			"namespaces": []string{"cgroup", "ipc", "mount", "network", "pid", "uts"},
			"cgroup":     map[string]any{"v1": true, "v2": true, "systemd": true},
		},
	}
}
