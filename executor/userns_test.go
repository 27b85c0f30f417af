package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/testutil"
)

// testIDBase is the first host ID of a test's user namespace: a 65,536-wide
// range above 100000 that differs per test process, so that parallel
// package runs do not share one.
func testIDBase() uint32 { return 100000 + uint32(os.Getpid()%4096)*65536 }

func usernsMapping(base uint32) []specs.LinuxIDMapping {
	return []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: 65536}}
}

// usernsSpec is a busybox container with its own user, PID, mount, IPC
// and UTS namespaces, root inside mapped to base.
func usernsSpec(rootfs string, base uint32, args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: rootfs},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.UserNamespace}, {Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
			},
			UIDMappings: usernsMapping(base),
			GIDMappings: usernsMapping(base),
		},
	}
}

// runToExit creates, starts and waits for container id and returns its
// combined output.
func runToExit(t *testing.T, r *Runtime, id, bundle string, spec *specs.Spec) (string, *State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	if err := r.Create(ctx, id, bundle, CreateOptions{Spec: spec, Stdout: out, Stderr: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out.Name())
	return string(data), st
}

// TestUserNamespace runs a container whose root is an unprivileged host
// user: inside, uid 0 with the spec's mappings; a root-only host file bound
// in stays unreadable; a file created through an idmapped bind mount is
// owned on the host by what the mount's mapping says, with the container's
// mappings and with a mapping of its own; the rootfs, idmapped, shows the
// host's root-owned files as root's.
func TestUserNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	base := testIDBase()
	host := t.TempDir()
	secret := filepath.Join(host, "secret")
	if err := os.WriteFile(secret, []byte("host root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	same := filepath.Join(host, "same") // root's on the host: root's inside
	if err := os.Mkdir(same, 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(host, "other") // uid 1000's on the host: root's inside
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(host, "plain") // root's on the host, not idmapped
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	own := []specs.LinuxIDMapping{{ContainerID: 1000, HostID: base, Size: 1}}
	spec := usernsSpec(rootfs, base, "sh", "-c", `
id -u; id -g
cat /proc/self/uid_map /proc/self/gid_map
cat /secret 2>/dev/null && echo secret-read || echo secret-denied
touch /same/by-root && echo same-ok
touch /other/by-root && echo other-ok
touch /plain/by-root 2>/dev/null && echo plain-written || echo plain-denied
stat -c 'busybox %u:%g' /bin/busybox
`)
	spec.Annotations = map[string]string{IDMapRootAnnotation: "true"}
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/secret", Type: "bind", Source: secret, Options: []string{"bind", "ro"}},
		specs.Mount{Destination: "/same", Type: "bind", Source: same, Options: []string{"bind", "idmap"},
			UIDMappings: usernsMapping(base), GIDMappings: usernsMapping(base)},
		specs.Mount{Destination: "/other", Type: "bind", Source: other, Options: []string{"bind", "idmap"},
			UIDMappings: own, GIDMappings: own},
		specs.Mount{Destination: "/plain", Type: "bind", Source: plain, Options: []string{"bind"}},
	)
	out, st := runToExit(t, r, "userns-"+fmt.Sprint(os.Getpid()), filepath.Dir(rootfs), spec)
	if !st.Exited || st.ExitCode != 0 {
		t.Errorf("exit code %d, want 0; output:\n%s", st.ExitCode, out)
	}
	mapLine := fmt.Sprintf("0 %d 65536", base)
	want := []string{"0", "0", mapLine, mapLine, "secret-denied", "same-ok", "other-ok", "plain-denied", "busybox 0:0"}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inside the container:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range []struct {
		path     string
		uid, gid uint32
	}{
		// Root inside is host uid base; through the mount's mapping
		// (containerID: on the filesystem, hostID: of the process) it
		// writes as 0 on /same and as 1000 on /other.
		{filepath.Join(same, "by-root"), 0, 0},
		{filepath.Join(other, "by-root"), 1000, 1000},
	} {
		var sb unix.Stat_t
		if err := unix.Stat(c.path, &sb); err != nil {
			t.Errorf("file created inside: %v", err)
			continue
		}
		if sb.Uid != c.uid || sb.Gid != c.gid {
			t.Errorf("%s is owned by %d:%d on the host, want %d:%d", c.path, sb.Uid, sb.Gid, c.uid, c.gid)
		}
	}
	if _, err := os.Stat(filepath.Join(plain, "by-root")); err == nil {
		t.Errorf("root inside the user namespace wrote into a host root's directory bound without idmap")
	}
}

// TestUserNamespaceNeedsMappings: a user namespace without mappings is an
// error that names the missing field.
func TestUserNamespaceNeedsMappings(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	spec := usernsSpec(rootfs, testIDBase(), "true")
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = nil, nil
	id := "userns-nomap-" + fmt.Sprint(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	err = r.Create(context.Background(), id, filepath.Dir(rootfs), CreateOptions{Spec: spec})
	if err == nil || !strings.Contains(err.Error(), "linux.uidMappings") {
		t.Fatalf("create with a user namespace and no mappings: %v, want an error naming linux.uidMappings", err)
	}
	if _, err := r.State(context.Background(), id); !errors.Is(err, ErrNotExist) {
		t.Errorf("state after the failed create: %v", err)
	}
}

// TestUserNamespaceIDMapFilesystems: an idmapped bind mount of a tmpfs
// directory (tmpfs idmaps since Linux 6.3) works like one of the root
// filesystem's; one of a filesystem that cannot be idmapped (sysfs) is an
// error that names the mount.
func TestUserNamespaceIDMapFilesystems(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &sfs); err != nil || sfs.Type != unix.TMPFS_MAGIC {
		testutil.SkipOrFail(t, "/dev/shm is not a tmpfs (%v)", err)
	}
	shm, err := os.MkdirTemp("/dev/shm", "reconciled-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	base := testIDBase()
	spec := usernsSpec(rootfs, base, "touch", "/shm/by-root")
	spec.Annotations = map[string]string{IDMapRootAnnotation: "true"} // root may make /shm
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/shm", Type: "bind", Source: shm, Options: []string{"bind", "idmap"},
		UIDMappings: usernsMapping(base), GIDMappings: usernsMapping(base)})
	out, st := runToExit(t, r, "userns-tmpfs-"+fmt.Sprint(os.Getpid()), filepath.Dir(rootfs), spec)
	if !st.Exited || st.ExitCode != 0 {
		t.Errorf("touch in an idmapped tmpfs directory: exit code %d: %s", st.ExitCode, out)
	}
	var sb unix.Stat_t
	if err := unix.Stat(filepath.Join(shm, "by-root"), &sb); err != nil || sb.Uid != 0 || sb.Gid != 0 {
		t.Errorf("file created by root inside through the idmapped tmpfs: %v, owner %d:%d on the host, want 0:0", err, sb.Uid, sb.Gid)
	}

	spec = usernsSpec(rootfs, base, "true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/hostsys", Type: "bind", Source: "/sys/class", Options: []string{"bind", "idmap"}})
	id := "userns-sysfs-" + fmt.Sprint(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	err = r.Create(context.Background(), id, filepath.Dir(rootfs), CreateOptions{Spec: spec})
	if err == nil || !strings.Contains(err.Error(), "mounts[1] /hostsys") || !strings.Contains(err.Error(), "cannot idmap") {
		t.Errorf("create with an idmapped sysfs bind: %v, want an error naming mounts[1] /hostsys and saying it cannot be idmapped", err)
	}
	t.Logf("idmapped sysfs: %v", err)

	// A bind that is not recursive of a directory with a mount below it
	// (as /sys/kernel has tracefs on most hosts): refused by the kernel,
	// which is said with the mount and the fix.
	below := filepath.Join(shm, "below")
	if err := os.Mkdir(below, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fmt.Sprintf("userns-below-%d", os.Getpid()), below, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(below, unix.MNT_DETACH) })
	spec = usernsSpec(rootfs, base, "true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/shm", Type: "bind", Source: shm, Options: []string{"bind", "idmap"},
		UIDMappings: usernsMapping(base), GIDMappings: usernsMapping(base)})
	id = "userns-below-" + fmt.Sprint(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	err = r.Create(context.Background(), id, filepath.Dir(rootfs), CreateOptions{Spec: spec})
	if err == nil || !strings.Contains(err.Error(), "mounts[1] /shm") || !strings.Contains(err.Error(), below+" is mounted below it") || !strings.Contains(err.Error(), "use rbind") {
		t.Errorf("create with a bind (not rbind) over a mount: %v, want an error naming mounts[1] /shm, the mount %s below and rbind", err, below)
	}
	t.Logf("idmapped bind with a mount below: %v", err)
	// The fix the message gives works.
	spec.Mounts[len(spec.Mounts)-1].Options = []string{"rbind", "idmap"}
	out, st = runToExit(t, r, "userns-rbind-"+fmt.Sprint(os.Getpid()), filepath.Dir(rootfs), spec)
	if !st.Exited || st.ExitCode != 0 {
		t.Errorf("the same with rbind: exit code %d: %s", st.ExitCode, out)
	}
}

// Exec into a container with a user namespace (the joiner, userns_amd64.S):
// the process is in the init's user namespace, as its root (uid 0 inside,
// base on the host) with the container's capabilities there, in every
// other namespace of the init's, and a process run as another user of the
// container is that user on the host too.
func TestUserNamespaceExec(t *testing.T) {
	testutil.RequireRoot(t)
	if !waiter.UsernsJoinerAvailable() {
		t.Skipf("no user-namespace joiner on %s", runtime.GOARCH)
	}
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := "userns-exec-" + fmt.Sprint(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	base := testIDBase()
	spec := usernsSpec(rootfs, base, "sleep", "1000")
	spec.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_CHOWN", "CAP_KILL"},
		Permitted: []string{"CAP_CHOWN", "CAP_KILL"},
	}
	// exec reads the process's defaults from the bundle's config.json.
	bundle := t.TempDir()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, id, bundle, CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err := r.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	run := func(o ExecOptions) (string, int) {
		t.Helper()
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		o.Stdout, o.Stderr = out, out
		p, err := r.Exec(ctx, id, o)
		if err != nil {
			t.Fatalf("exec %v: %v", o.Args, err)
		}
		code, err := p.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(out.Name())
		return string(data), code.Code
	}
	nsOf := func(pid, ns string) string {
		l, err := os.Readlink("/proc/" + pid + "/ns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// The exec'd process's IDs, capabilities, mappings and namespaces,
	// against the init's as the host sees them.
	out, code := run(ExecOptions{Args: []string{"sh", "-c", `id -u; id -g; grep -E '^(Uid|Gid|CapEff):' /proc/self/status; cat /proc/self/uid_map; for n in user mnt pid ipc uts; do readlink /proc/self/ns/$n; done`}})
	if code != 0 {
		t.Fatalf("exec exited %d:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	init := strconv.Itoa(st.Pid)
	if len(lines) != 11 || lines[0] != "0" || lines[1] != "0" {
		t.Fatalf("exec: %q, want uid 0 and gid 0 inside", out)
	}
	if f := strings.Fields(lines[5]); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(base) || f[2] != "65536" {
		t.Errorf("uid_map in the exec'd process: %q, want 0 %d 65536", lines[5], base)
	}
	// CAP_CHOWN (0) and CAP_KILL (5): 0x21.
	if !strings.HasSuffix(strings.Fields(lines[4])[1], "0000021") {
		t.Errorf("exec'd process: %q, want CapEff 0x21 (CAP_CHOWN, CAP_KILL)", lines[4])
	}
	for i, ns := range []string{"user", "mnt", "pid", "ipc", "uts"} {
		if got, want := lines[6+i], nsOf(init, ns); got != want {
			t.Errorf("exec'd process's %s namespace: %s, the init's %s", ns, got, want)
		}
	}
	// An exec as another user of the container: that user, mapped.
	out, code = run(ExecOptions{Args: []string{"sh", "-c", "id -u; id -g; touch /tmp/by-1000 && stat -c %u:%g /tmp/by-1000"}, User: &specs.User{UID: 1000, GID: 1000}})
	if code != 0 || strings.Fields(out)[0] != "1000" || strings.Fields(out)[2] != "1000:1000" {
		t.Fatalf("exec as 1000: exit %d:\n%s", code, out)
	}
	var sb unix.Stat_t
	if err := unix.Stat(filepath.Join("/proc", init, "root", "tmp", "by-1000"), &sb); err != nil || sb.Uid != base+1000 || sb.Gid != base+1000 {
		t.Errorf("file made by uid 1000 inside: %v, owner %d:%d on the host, want %d:%d", err, sb.Uid, sb.Gid, base+1000, base+1000)
	}
}
