package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// usernsManifest is a busybox container with userns: auto.
func usernsManifest(name, rootfs string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: %s}
  command: ["/bin/sh", "-c", "exec sleep 100000"]
  user: "0:0"
  stop: {signal: SIGKILL, timeout: 1s}
  userns: auto
`, name, rootfs)
}

// hostRange reads the host UID that is 0 in process pid's user namespace,
// and the width of the mapping, from /proc/PID/uid_map and gid_map.
func hostRange(t *testing.T, pid int) (uid, gid, size uint64) {
	t.Helper()
	read := func(f string) (uint64, uint64) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		fs := strings.Fields(string(data))
		if len(fs) != 3 || fs[0] != "0" {
			t.Fatalf("%s of %d: %q, want one line mapping 0", f, pid, data)
		}
		h, _ := strconv.ParseUint(fs[1], 10, 32)
		n, _ := strconv.ParseUint(fs[2], 10, 32)
		return h, n
	}
	uid, size = read("uid_map")
	gid, gsize := read("gid_map")
	if gsize != size {
		t.Fatalf("uid_map and gid_map of %d differ in size: %d, %d", pid, size, gsize)
	}
	return uid, gid, size
}

// userns: auto gives each container 65,536 host IDs of its own from the
// subordinate ID files (here temporary ones, --subuid-file and
// --subgid-file): two containers get disjoint ranges inside the file's; a
// daemon restart keeps them (a container created after it gets another
// one), and a deleted container's range is given again.
func TestUsernsAutoRanges(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	const size = 65536
	base := uint64(1000000 + (os.Getpid()%4096)*4*size)
	subuid := filepath.Join(e.dir, "subuid")
	subgid := filepath.Join(e.dir, "subgid")
	if err := os.WriteFile(subuid, fmt.Appendf(nil, "someone:100000:65536\nreconciled:%d:%d\n", base, 3*size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(subgid, fmt.Appendf(nil, "reconciled:%d:%d\n", base+size, 3*size), 0o644); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--subuid-file", subuid, "--subgid-file", subgid}
	e.start(flags...)
	a, b, c := e.name("a"), e.name("b"), e.name("c")
	e.write("a.yaml", usernsManifest(a, rootfs))
	e.write("b.yaml", usernsManifest(b, rootfs))
	pa := e.waitRunning(a, 60*time.Second).Pid
	pb := e.waitRunning(b, 60*time.Second).Pid
	ua, ga, na := hostRange(t, pa)
	ub, gb, nb := hostRange(t, pb)
	inside := func(uid, gid uint64) bool {
		return uid >= base && uid+size <= base+3*size && gid >= base+size && gid+size <= base+4*size
	}
	if na != size || nb != size || !inside(ua, ga) || !inside(ub, gb) || ua == ub || ga == gb ||
		(ua < ub+size && ub < ua+size) || (ga < gb+size && gb < ga+size) {
		t.Fatalf("ranges: %s uid %d gid %d (%d), %s uid %d gid %d (%d); want %d-wide disjoint ranges in %d+%d (uid) and %d+%d (gid)",
			a, ua, ga, na, b, ub, gb, nb, size, base, 3*size, base+size, 3*size)
	}

	e.stop(syscall.SIGTERM)
	e.start(flags...)
	if p := e.waitRunning(a, 30*time.Second).Pid; p != pa {
		t.Fatalf("%s was restarted across the daemon restart: pid %d, then %d", a, pa, p)
	}
	e.write("c.yaml", usernsManifest(c, rootfs))
	pc := e.waitRunning(c, 60*time.Second).Pid
	uc, gc, _ := hostRange(t, pc)
	if !inside(uc, gc) || uc == ua || uc == ub || gc == ga || gc == gb {
		t.Fatalf("after a restart %s got uid %d gid %d, one of those of %s (%d, %d) and %s (%d, %d): the allocation was lost", c, uc, gc, a, ua, ga, b, ub, gb)
	}

	e.deleteGone("b.yaml", b, pb)
	d := e.name("d")
	e.write("d.yaml", usernsManifest(d, rootfs))
	ud, gd, _ := hostRange(t, e.waitRunning(d, 60*time.Second).Pid)
	if ud != ub || gd != gb {
		t.Errorf("%s got uid %d gid %d; want those freed by the deleted %s (%d, %d), the only ones left", d, ud, gd, b, ub, gb)
	}
}

// A subordinate ID file without a range for user reconciled is an error on
// the container's status that says which line to add; the container never
// runs with the host's IDs.
func TestUsernsAutoWithoutSubuid(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	subuid := filepath.Join(e.dir, "subuid")
	if err := os.WriteFile(subuid, []byte("someone:100000:65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start("--subuid-file", subuid, "--subgid-file", subuid)
	a := e.name("a")
	e.write("a.yaml", usernsManifest(a, rootfs))
	r := e.waitFor("an error naming the subuid file", 60*time.Second, func(r *report) bool {
		c := r.Get(a)
		return c != nil && strings.Contains(c.Message, subuid)
	})
	if c := r.Get(a); c.Pid != 0 || !strings.Contains(c.Message, `"reconciled:100000:65536000"`) {
		t.Errorf("status of %s: phase %s pid %d message %q; want no process and the line to add", a, c.Phase, c.Pid, c.Message)
	}
}

// An image container with userns: auto runs from an overlay of idmapped
// layers: root inside owns the image's files (no layer chowned), writes a
// bound host directory as host root (idmapped bind) and its writable layer
// with its own host IDs, and the process runs as the allocated host UID;
// the generated spec carries the user namespace, the mappings and the
// idmapped bind mount.
func TestUsernsAutoImage(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	registry.Push(t, reg, "e2e/userns:1", registry.BusyboxImage(t))
	const size = 65536
	base := uint64(1000000 + (os.Getpid()%4096)*4*size)
	subids := filepath.Join(e.dir, "subids")
	if err := os.WriteFile(subids, fmt.Appendf(nil, "reconciled:%d:%d\n", base, size), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(e.dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	name := e.name("img")
	e.write("img.yaml", imageManifest(name, reg.Ref("e2e/userns:1"), fmt.Sprintf(`  root: {readonly: false}
  userns: auto
  mounts: [{type: bind, source: %s, target: /data}]
  command: [/bin/sh, -c, 'echo "uid $(id -u) busybox $(stat -c %%u /bin/busybox)"; echo written > /etc/marker && touch /data/by-root && echo wrote; exec sleep 100000']
`, data)))
	e.start("--subuid-file", subids, "--subgid-file", subids)
	c := e.waitRunning(name, 60*time.Second)
	e.waitLogs(name, "wrote")
	e.waitLogs(name, "uid 0 busybox 0")
	if uid, gid, n := hostRange(t, c.Pid); uid != base || gid != base || n != size {
		t.Errorf("mapping %d %d %d, want %d %d %d", uid, gid, n, base, base, size)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", c.Pid), &st); err != nil || uint64(st.Uid) != base {
		t.Errorf("the container's process runs as host uid %d (%v), want %d", st.Uid, err, base)
	}
	// The bind mount is idmapped: root inside writes as host root. The
	// writable layer is the container's own: its host IDs.
	for _, c := range []struct {
		path string
		uid  uint64
	}{{filepath.Join(data, "by-root"), 0}, {filepath.Join(e.state, "rw", name, "upper", "etc", "marker"), base}} {
		if err := syscall.Stat(c.path, &st); err != nil || uint64(st.Uid) != c.uid || uint64(st.Gid) != c.uid {
			t.Errorf("%s: owner %d:%d (%v), want %d:%d", c.path, st.Uid, st.Gid, err, c.uid, c.uid)
		}
	}
	// The image's layers are untouched: their files are still host root's.
	layers, _ := filepath.Glob(filepath.Join(e.images, "layers", "sha256", "*", "bin", "busybox"))
	for _, l := range layers {
		if err := syscall.Stat(l, &st); err != nil || st.Uid != 0 {
			t.Errorf("image layer file %s: owner %d (%v), want 0: a layer was chowned", l, st.Uid, err)
		}
	}
	if len(layers) == 0 {
		t.Errorf("no busybox in the image's layers under %s", e.images)
	}
	spec, raw := readBundleSpec(t, filepath.Join(e.state, "bundles", name, "config.json"))
	userNS, idmapped := false, false
	for _, n := range spec.Linux.Namespaces {
		userNS = userNS || n.Type == specs.UserNamespace
	}
	for _, m := range spec.Mounts {
		idmapped = idmapped || slices.Contains(m.Options, "idmap")
	}
	_, idmapRoot := spec.Annotations["dev.reconciled.idmap-root"]
	if !userNS || len(spec.Linux.UIDMappings) == 0 || uint64(spec.Linux.UIDMappings[0].HostID) != base || idmapRoot || !idmapped {
		t.Errorf("generated spec lacks the user namespace, the mappings or the idmapped mounts:\n%s", raw)
	}
}

func readBundleSpec(t *testing.T, path string) (*specs.Spec, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil || s.Linux == nil {
		t.Fatalf("bundle spec %s: %v\n%s", path, err, data)
	}
	return &s, string(data)
}

// Exec into a userns: auto container (the executor's user-namespace
// joiner): an exec probe runs in it and turns the container healthy once
// the file it tests exists, and `reconciled exec` runs as root of the
// container's user namespace, in its filesystem, with the container's
// host IDs outside.
func TestUsernsAutoExec(t *testing.T) {
	if !desired.ExecIntoUserns {
		t.Skipf("no exec into a user namespace on %s", runtime.GOARCH)
	}
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	const size = 65536
	base := uint64(1000000 + (os.Getpid()%4096)*4*size)
	subuid := filepath.Join(e.dir, "subuid")
	if err := os.WriteFile(subuid, fmt.Appendf(nil, "reconciled:%d:%d\n", base, 2*size), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start("--subuid-file", subuid, "--subgid-file", subuid)
	web := e.name("web")
	e.write("web.yaml", usernsManifest(web, rootfs)+
		"  mounts: [{type: tmpfs, target: /tmp}]\n"+
		"  health: {exec: [/bin/sh, -c, 'test -e /tmp/ready'], interval: 200ms, timeout: 5s, retries: 1000}\n")
	c := e.waitRunning(web, 60*time.Second)
	uid, gid, _ := hostRange(t, c.Pid)
	if c = e.statusOf(web); c.Health == "healthy" {
		t.Fatalf("healthy before /tmp/ready exists: %+v", c)
	}
	out, err := exec.Command(bin, "exec", "--state", e.state, web, "--", "/bin/sh", "-c",
		"touch /tmp/ready && id -u && id -g && stat -c %u:%g /tmp/ready && cat /proc/self/uid_map").CombinedOutput()
	if err != nil {
		t.Fatalf("exec: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 6 || f[0] != "0" || f[1] != "0" || f[2] != "0:0" || f[3] != "0" || f[4] != strconv.FormatUint(uid, 10) {
		t.Fatalf("exec printed %q; want uid 0, gid 0, a file of 0:0 and the uid_map 0 %d %d", out, uid, size)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(inContainer(c.Pid, "/tmp/ready"), &st); err != nil || uint64(st.Uid) != uid || uint64(st.Gid) != gid {
		t.Errorf("/tmp/ready made by exec: %v, owner %d:%d on the host, want %d:%d", err, st.Uid, st.Gid, uid, gid)
	}
	if c = e.waitHealth(web, "healthy", 30*time.Second); c.Restarts != 0 {
		t.Errorf("healthy after %d restarts, want 0: %+v", c.Restarts, c)
	}
}
