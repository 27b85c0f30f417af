package desired

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func load(t *testing.T, dir string, prev Set, opts Options) Set {
	t.Helper()
	snap, err := Scan(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return Next(prev, snap, opts)
}

var insecure = Options{InsecureManifests: true}

func TestNextLastGood(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, manifest("a1", "1")+"---\n"+manifest("a2", "1"))
	write(t, b, manifest("b", "1"))
	s1 := load(t, dir, Set{}, insecure)
	if len(s1.Containers) != 3 || len(s1.Errors()) != 0 {
		t.Fatalf("initial: %s %v", describeSet(s1), s1.Errors())
	}

	// a.yaml broken: both its containers keep their definitions; b applies.
	write(t, a, manifest("a1", "2")+"---\n"+manifest("a2", "2")+"  restart: sometimes\n")
	write(t, b, manifest("b", "2"))
	s2 := load(t, dir, s1, insecure)
	if arg(s2, "a1") != "1" || arg(s2, "a2") != "1" || arg(s2, "b") != "2" {
		t.Errorf("after breaking a.yaml: %s", describeSet(s2))
	}
	if st := s2.Files[a]; len(st.Errors) != 1 || !slices.Equal(st.Containers, []string{"a1", "a2"}) || st.ContentHash == s1.Files[a].ContentHash {
		t.Errorf("status of a.yaml: %+v", st)
	}
	if s2.Containers["a1"] != s1.Containers["a1"] {
		t.Errorf("the last good container was not carried over as is")
	}

	// Still broken, differently: same last good, new error.
	write(t, a, "a: [\n")
	s3 := load(t, dir, s2, insecure)
	if arg(s3, "a1") != "1" || !strings.Contains(s3.Files[a].Errors[0].Msg, "invalid YAML") {
		t.Errorf("still broken: %s %v", describeSet(s3), s3.Errors())
	}

	// A new file that is broken applies nothing.
	write(t, filepath.Join(dir, "c.yaml"), manifest("c", "1")+"  network: bridge\n")
	s4 := load(t, dir, s3, insecure)
	if s4.Containers["c"] != nil || len(s4.Files[filepath.Join(dir, "c.yaml")].Errors) != 1 {
		t.Errorf("new broken file: %s", describeSet(s4))
	}

	// Deleting the broken file removes its last good containers.
	os.Remove(a)
	s5 := load(t, dir, s4, insecure)
	if s5.Containers["a1"] != nil || s5.Containers["a2"] != nil || s5.Files[a] != nil {
		t.Errorf("after deleting a.yaml: %s", describeSet(s5))
	}
}

func TestNextUnchangedFileNotReparsed(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	s1 := load(t, dir, Set{}, insecure)
	s2 := load(t, dir, s1, insecure)
	if s2.Containers["a"] != s1.Containers["a"] || !s2.Equal(s1) {
		t.Errorf("an unchanged file was parsed again")
	}
	// A comment changes the content hash but not the spec hash.
	write(t, filepath.Join(dir, "a.yaml"), "# hello\n"+manifest("a", "1"))
	s3 := load(t, dir, s2, insecure)
	if s3.Equal(s2) || s3.Containers["a"].Hash != s2.Containers["a"].Hash {
		t.Errorf("comment: equal %v, hash %s vs %s", s3.Equal(s2), s3.Containers["a"].Hash, s2.Containers["a"].Hash)
	}
}

func TestNextDuplicates(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, manifest("web", "a")+"---\n"+manifest("other", "1"))
	s1 := load(t, dir, Set{}, insecure)

	// b.yaml also defines web: neither new definition applies; web keeps
	// its definition from a.yaml; other (in a.yaml, unchanged) stays.
	write(t, b, manifest("web", "b"))
	write(t, a, manifest("web", "a2")+"---\n"+manifest("other", "2"))
	s2 := load(t, dir, s1, insecure)
	if arg(s2, "web") != "a" || arg(s2, "other") != "1" {
		t.Errorf("conflict: %s", describeSet(s2))
	}
	want := map[string]string{
		a: `a.yaml:4: metadata.name: "web" is also defined in b.yaml:4; names must be unique in the directory, and neither definition is applied`,
		b: `b.yaml:4: metadata.name: "web" is also defined in a.yaml:4; names must be unique in the directory, and neither definition is applied`,
	}
	for f, w := range want {
		if errs := s2.Files[f].Errors; len(errs) != 1 || errs[0].Error() != w {
			t.Errorf("%s: %v, want %s", f, errs, w)
		}
	}

	// A fresh start with the conflict: web is not applied at all.
	s0 := load(t, dir, Set{}, insecure)
	if s0.Containers["web"] != nil || s0.Containers["other"] != nil || len(s0.Errors()) != 2 {
		t.Errorf("fresh conflict: %s", describeSet(s0))
	}

	// Resolved by deleting b.yaml: a.yaml applies whole.
	os.Remove(b)
	s3 := load(t, dir, s2, insecure)
	if arg(s3, "web") != "a2" || arg(s3, "other") != "2" || len(s3.Errors()) != 0 {
		t.Errorf("resolved: %s %v", describeSet(s3), s3.Errors())
	}
}

func TestNextLimit(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a1", "1")+"---\n"+manifest("a2", "1"))
	write(t, filepath.Join(dir, "b.yaml"), manifest("b1", "1")+"---\n"+manifest("b2", "1"))
	opts := Options{InsecureManifests: true, MaxContainers: 3}
	s := load(t, dir, Set{}, opts)
	if len(s.Containers) != 2 || s.Containers["a1"] == nil {
		t.Errorf("limit: %s", describeSet(s))
	}
	errs := s.Errors()
	if len(errs) != 1 || errs[0].Error() != "b.yaml: the directory would define more than 3 containers; this file is not applied" {
		t.Errorf("limit errors: %v", errs)
	}
}

func TestScanFileTooLarge(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "big.yaml"), strings.Repeat("#", MaxFileSize+1))
	s := load(t, dir, Set{}, insecure)
	if errs := s.Errors(); len(errs) != 1 || errs[0].Error() != "big.yaml: file is 1048577 bytes, larger than the limit of 1048576 (1 MiB); split it" {
		t.Errorf("errors: %v", errs)
	}
}

// A FIFO named like a manifest is refused at once: opening it must not
// wait for a writer (that would stop the watcher for good).
func TestScanFIFORefused(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "good.yaml"), manifest("good", "1"))
	if err := unix.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan Set, 1)
	go func() { done <- load(t, dir, Set{}, insecure) }()
	select {
	case s := <-done:
		errs := s.Errors()
		if len(s.Containers) != 1 || len(errs) != 1 || errs[0].Error() != "pipe.yaml: not a regular file" {
			t.Errorf("containers %s, errors %v; want good and pipe.yaml: not a regular file", describeSet(s), errs)
		}
	case <-time.After(10 * time.Second):
		// Unblock the stuck open so the test can end.
		if w, err := os.OpenFile(filepath.Join(dir, "pipe.yaml"), os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		t.Fatal("reading a directory with a FIFO named pipe.yaml blocked")
	}
}

func TestScanStrictModes(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	a := filepath.Join(dir, "a.yaml")
	write(t, a, manifest("a", "1"))
	write(t, filepath.Join(dir, "team", "b.yaml"), manifest("b", "1"))
	strict := Options{}
	s1 := load(t, dir, Set{}, strict)
	if len(s1.Containers) != 2 || len(s1.Errors()) != 0 {
		t.Fatalf("trusted: %s %v", describeSet(s1), s1.Errors())
	}

	// A group-writable file is refused, its last good kept.
	write(t, a, manifest("a", "2"))
	os.Chmod(a, 0o664)
	s2 := load(t, dir, s1, strict)
	if arg(s2, "a") != "1" {
		t.Errorf("refused file applied: %s", describeSet(s2))
	}
	if errs := s2.Files[a].Errors; len(errs) != 1 || errs[0].Error() != "a.yaml: refused: "+a+" is writable by group or others (mode 0664; use chmod go-w) (run with --insecure-manifests to skip this check)" {
		t.Errorf("errors: %v", errs)
	}
	// ... unless the check is off.
	if s := load(t, dir, s1, insecure); arg(s, "a") != "2" {
		t.Errorf("insecure: %s", describeSet(s))
	}
	os.Chmod(a, 0o644)

	// A file owned by another user.
	os.Chown(a, 1000, 1000)
	s3 := load(t, dir, s1, strict)
	if errs := s3.Files[a].Errors; len(errs) != 1 || !strings.Contains(errs[0].Msg, "is owned by uid 1000, not root") {
		t.Errorf("owner: %v", errs)
	}
	os.Chown(a, 0, 0)

	// A world-writable subdirectory refuses everything under it.
	os.Chmod(filepath.Join(dir, "team"), 0o777)
	s4 := load(t, dir, s1, strict)
	if errs := s4.Files[filepath.Join(dir, "team", "b.yaml")].Errors; len(errs) != 1 || !strings.Contains(errs[0].Msg, "team is writable by group or others (mode 0777") {
		t.Errorf("directory: %v", errs)
	}
	if arg(s4, "a") != "2" || arg(s4, "b") != "1" {
		t.Errorf("directory: %s", describeSet(s4))
	}
	os.Chmod(filepath.Join(dir, "team"), 0o755)

	// A symlinked manifests path whose containing directory is writable.
	holder := filepath.Join(t.TempDir(), "holder")
	os.Mkdir(holder, 0o777)
	os.Chmod(holder, 0o777)
	link := filepath.Join(holder, "current")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	s5 := load(t, link, Set{}, strict)
	if len(s5.Containers) != 0 || len(s5.Errors()) != 2 || !strings.Contains(s5.Errors()[0].Msg, holder+" is writable") {
		t.Errorf("writable link holder: %s %v", describeSet(s5), s5.Errors())
	}
}

func TestScanNotRoot(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, manifest("a", "1"))
	os.Chmod(a, 0o666)
	opts := Options{euid: func() int { return 1000 }}
	if s := load(t, dir, Set{}, opts); len(s.Errors()) != 0 {
		t.Errorf("the check applies only to root: %v", s.Errors())
	}
}

func TestScanMissing(t *testing.T) {
	_, err := Scan(filepath.Join(t.TempDir(), "nope"), insecure)
	if !errorsIs(err, ErrNotExist) {
		t.Errorf("err %v", err)
	}
	dir := t.TempDir()
	os.Symlink("nowhere", filepath.Join(dir, "dangling"))
	if _, err := Scan(filepath.Join(dir, "dangling"), insecure); !errorsIs(err, ErrNotExist) {
		t.Errorf("dangling: %v", err)
	}
}

func TestRevision(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	const sha2 = "89abcdef0123456789abcdef0123456789abcdef"
	t.Run("branch", func(t *testing.T) {
		repo := t.TempDir()
		write(t, filepath.Join(repo, ".git", "HEAD"), "ref: refs/heads/main\n")
		write(t, filepath.Join(repo, ".git", "refs", "heads", "main"), sha+"\n")
		write(t, filepath.Join(repo, "manifests", "a.yaml"), manifest("a", "1"))
		if s := load(t, filepath.Join(repo, "manifests"), Set{}, insecure); s.Revision != sha {
			t.Errorf("revision %q", s.Revision)
		}
	})
	t.Run("packed", func(t *testing.T) {
		repo := t.TempDir()
		write(t, filepath.Join(repo, ".git", "HEAD"), "ref: refs/heads/main\n")
		write(t, filepath.Join(repo, ".git", "packed-refs"), "# pack-refs with: peeled fully-peeled sorted\n"+sha2+" refs/heads/other\n"+sha+" refs/heads/main\n")
		if rev := revision(repo); rev != sha {
			t.Errorf("revision %q", rev)
		}
	})
	t.Run("detached worktree", func(t *testing.T) {
		root := t.TempDir()
		write(t, filepath.Join(root, ".git", "worktrees", sha, "HEAD"), sha+"\n")
		write(t, filepath.Join(root, ".git", "worktrees", sha, "commondir"), "../..\n")
		wt := filepath.Join(root, ".worktrees", sha)
		write(t, filepath.Join(wt, ".git"), "gitdir: "+filepath.Join(root, ".git", "worktrees", sha)+"\n")
		if rev := revision(wt); rev != sha {
			t.Errorf("revision %q", rev)
		}
	})
	t.Run("git-sync rev dir", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "rev-"+sha, "hosts")
		os.MkdirAll(d, 0o755)
		if rev := revision(d); rev != sha {
			t.Errorf("revision %q", rev)
		}
	})
	t.Run("none", func(t *testing.T) {
		if rev := revision(t.TempDir()); rev != "" {
			t.Errorf("revision %q", rev)
		}
	})
}

func TestHashNormalized(t *testing.T) {
	ref := parseOne(t, base+"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n")
	same := []string{
		// reordered keys, comments, flow vs block style
		"# comment\nkind: Container\napiVersion: reconciled.dev/v1\nspec:\n  stop:\n    signal: SIGTERM # same\n  capabilities:\n    add: [cap_sys_time, CAP_NET_ADMIN]\n  resources:\n    cpu: \"0.5\"\n    memory: 268435456\n  env:\n    B: y\n    A: x\n  command:\n    - /bin/true\n  root:\n    path: /\n    readonly: true\nmetadata:\n  name: web\n",
		// JSON
		`{"apiVersion":"reconciled.dev/v1","kind":"Container","metadata":{"name":"web"},"spec":{"root":{"path":"/"},"command":["/bin/true"],"env":{"B":"y","A":"x"},"resources":{"memory":"0.25Gi","cpu":0.5},"capabilities":{"add":["SYS_TIME","NET_ADMIN","NET_ADMIN"]},"stop":{"signal":15,"timeout":"10s"}}}`,
	}
	for _, src := range same {
		c := parseOne(t, src)
		if c.Hash != ref.Hash || c.BaseHash != ref.BaseHash {
			t.Errorf("hash changed for an equivalent manifest:\n%s", src)
		}
		if f := ChangedFields(ref, c); f != nil {
			t.Errorf("ChangedFields of equivalent manifests: %v", f)
		}
	}
	changes := []struct {
		extra    string
		field    string
		baseSame bool
	}{
		{"  env: {A: x, B: z}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n", "spec.env", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 512Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n", "spec.resources.memory", true},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 1}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n", "spec.resources.cpu", true},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN]}\n  stop: {signal: TERM}\n", "spec.capabilities.add", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: INT}\n", "spec.stop.signal", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n  restart: never\n", "spec.restart", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n  oci: {process: {oomScoreAdj: 5}}\n", "spec.oci", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n  mounts: [{type: tmpfs, target: /tmp}]\n", "spec.mounts", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n  runtime: runc\n", "spec.runtime", false},
		{"  env: {A: x, B: y}\n  resources: {memory: 256Mi, cpu: 500m}\n  capabilities: {add: [NET_ADMIN, SYS_TIME]}\n  stop: {signal: TERM}\n  runtime: my-runtime\n", "spec.runtime", false},
	}
	for _, ch := range changes {
		c := parseOne(t, base+ch.extra)
		if c.Hash == ref.Hash {
			t.Errorf("%s: hash unchanged", ch.field)
		}
		if (c.BaseHash == ref.BaseHash) != ch.baseSame {
			t.Errorf("%s: base hash equal = %v, want %v", ch.field, c.BaseHash == ref.BaseHash, ch.baseSame)
		}
		if f := ChangedFields(ref, c); !slices.Equal(f, []string{ch.field}) {
			t.Errorf("%s: ChangedFields %v", ch.field, f)
		}
	}
	// The command changed.
	c := parseOne(t, strings.Replace(base, "/bin/true", "/bin/false", 1))
	if f := ChangedFields(parseOne(t, base), c); !slices.Equal(f, []string{"spec.command"}) {
		t.Errorf("ChangedFields %v", f)
	}
	// runtime: native is the default: same hash, no change.
	if n := parseOne(t, base+"  runtime: native\n"); n.Hash != parseOne(t, base).Hash || ChangedFields(parseOne(t, base), n) != nil {
		t.Errorf("runtime: native differs from the default")
	}
	// runc and crun are different runtimes.
	if a, b := parseOne(t, base+"  runtime: runc\n"), parseOne(t, base+"  runtime: crun\n"); a.Hash == b.Hash || !slices.Equal(ChangedFields(a, b), []string{"spec.runtime"}) {
		t.Errorf("runc and crun: same hash or ChangedFields %v", ChangedFields(a, b))
	}
	// Labels are not part of the spec: no new hash.
	l := parseOne(t, strings.Replace(base, "name: web", "name: web\n  labels: {a: b}", 1))
	if l.Hash != parseOne(t, base).Hash {
		t.Errorf("labels changed the hash")
	}
}

// TestGolden compares the spec generated for each testdata/*.yaml with
// testdata/*.golden; go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			cs, errs := Parse(filepath.Base(in), data, ParseOptions{})
			var got []byte
			if len(errs) > 0 {
				for _, e := range errs {
					got = append(got, e.Error()+"\n"...)
				}
			} else {
				type golden struct {
					Name     string
					Hash     string
					BaseHash string
					Restart  RestartPolicy
					Stop     string
					Spec     any
				}
				var out []golden
				for _, c := range cs {
					// The generated seccomp profile depends on the
					// kernel and the machine: only its default
					// action is shown.
					spec := *c.Spec
					if spec.Linux != nil && spec.Linux.Seccomp != nil {
						l := *spec.Linux
						l.Seccomp = &specs.LinuxSeccomp{DefaultAction: l.Seccomp.DefaultAction, DefaultErrnoRet: l.Seccomp.DefaultErrnoRet}
						spec.Linux = &l
					}
					out = append(out, golden{c.Name, c.Hash, c.BaseHash, c.Restart, c.StopSignal + " " + c.StopTimeout.String(), &spec})
				}
				got, err = json.MarshalIndent(out, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
			}
			gold := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(gold, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gold)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the generated spec (go test -run TestGolden -update to accept):\n%s", gold, got)
			}
		})
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// coarseDir mounts a ramfs for the test and returns it. ramfs takes file
// times from the coarse clock (one tick, 4ms at HZ=250) every time, where
// ext4 and tmpfs give a change made after a stat a finer time: on ramfs a
// file rewritten with the same size within one tick keeps its whole stat.
func coarseDir(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "ramfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(testutil.Name(t, 60), dir, "ramfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		testutil.SkipOrFail(t, "unable to mount a ramfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v; detaching it", dir, err)
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("detach %s: %v", dir, err)
			}
		}
	})
	return dir
}

// stampAt is the stamp a Loader compares for path.
func stampAt(t testing.TB, path string) sys.Stamp {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return sys.StampOf(&st)
}

// Without marks, a Loader sees every change that shows in a file's stat.
func TestLoaderSeesChangesInStat(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "team", "b.yaml")
	write(t, a, manifest("a", "1"))
	write(t, b, manifest("b", "1"))
	l := NewLoader(dir, insecure, Set{})
	step := func(what string, want map[string]string) {
		t.Helper()
		s, _, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Containers) != len(want) {
			t.Errorf("%s: %s", what, describeSet(s))
		}
		for n, v := range want {
			if arg(s, n) != v {
				t.Errorf("%s: %s", what, describeSet(s))
			}
		}
	}
	step("first", map[string]string{"a": "1", "b": "1"})
	step("unchanged", map[string]string{"a": "1", "b": "1"})
	write(t, a, manifest("a", "22"))
	step("rewritten, longer", map[string]string{"a": "22", "b": "1"})
	write(t, filepath.Join(dir, "team", ".b.tmp"), manifest("b", "2"))
	if err := os.Rename(filepath.Join(dir, "team", ".b.tmp"), b); err != nil {
		t.Fatal(err)
	}
	step("renamed over", map[string]string{"a": "22", "b": "2"})
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	step("removed", map[string]string{"b": "2"})
	write(t, a, manifest("a", "3"))
	step("created again", map[string]string{"a": "3", "b": "2"})
}

// A file rewritten in place with the same size within one clock tick keeps
// its stat: the mark the watcher makes for its event is what gets it read,
// a mark on the file or on a directory above it.
func TestLoaderSameSizeRewriteWithinATick(t *testing.T) {
	dir := coarseDir(t)
	file := filepath.Join(dir, "team", "a.yaml")
	write(t, file, manifest("a", "0"))
	marks := []string{file, filepath.Dir(file), dir}
	l := NewLoader(dir, insecure, Set{})
	if _, _, err := l.Load(); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := 1; i <= 50; i++ {
		v := fmt.Sprint(i % 10)
		before := stampAt(t, file)
		write(t, file, manifest("a", v))
		if stampAt(t, file) == before {
			kept++
		}
		l.MarkDirty(marks[i%len(marks)])
		s, _, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		if arg(s, "a") != v {
			t.Fatalf("rewrite %d, %s marked (stat kept %d times so far): %s, want a@%s", i, marks[i%len(marks)], kept, describeSet(s), v)
		}
	}
	if kept == 0 {
		t.Fatal("no rewrite kept the file's stat: the case this test is for never happened")
	}
}

// In strict mode a file is taken from the cache only when the directories
// above it give the same verdict: their mode changes nothing in the file's
// stat.
func TestLoaderStrictDirectoryChange(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	team := filepath.Join(dir, "team")
	b := filepath.Join(team, "b.yaml")
	write(t, b, manifest("b", "1"))
	l := NewLoader(dir, Options{}, Set{})
	if s, _, err := l.Load(); err != nil || arg(s, "b") != "1" || len(s.Errors()) != 0 {
		t.Fatalf("first: %s %v %v", describeSet(s), s.Errors(), err)
	}
	if err := os.Chmod(team, 0o777); err != nil {
		t.Fatal(err)
	}
	s, _, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.Files[b].Errors; len(errs) != 1 || !strings.Contains(errs[0].Msg, team+" is writable by group or others") {
		t.Errorf("writable directory: %v", errs)
	}
	if err := os.Chmod(team, 0o755); err != nil {
		t.Fatal(err)
	}
	if s, _, err := l.Load(); err != nil || len(s.Errors()) != 0 {
		t.Errorf("fixed: %v %v", s.Errors(), err)
	}
}

// markLoad marks paths dirty, as the watcher does for their events, and
// loads; it returns the Set and whether the Load walked the directories.
func markLoad(t *testing.T, l *Loader, paths ...string) (Set, bool) {
	t.Helper()
	for _, p := range paths {
		l.MarkDirty(p)
	}
	walks := l.walks
	s, _, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	return s, l.walks != walks
}

// renameInto writes content to a temporary name beside path and renames
// it over path.
func renameInto(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A file renamed into a subdirectory, or over a file there, is read at
// the Load its event marks, without a walk; the other files stay.
func TestLoaderEventRenameIntoSubdirectory(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 20; i++ {
		write(t, filepath.Join(dir, fmt.Sprintf("team-%d", i%3), fmt.Sprintf("svc-%d.yaml", i)), manifest(fmt.Sprintf("svc-%d", i), "1"))
	}
	l := NewLoader(dir, insecure, Set{})
	if _, _, err := l.Load(); err != nil {
		t.Fatal(err)
	}
	added := filepath.Join(dir, "team-1", "new.yaml")
	renameInto(t, added, manifest("new", "1"))
	s, walked := markLoad(t, l, added)
	if walked {
		t.Error("the Load for a file renamed into place walked the directories")
	}
	if arg(s, "new") != "1" || len(s.Containers) != 21 || s.Files[added] == nil || len(s.Errors()) != 0 {
		t.Fatalf("after the rename: %s %v", describeSet(s), s.Errors())
	}
	over := filepath.Join(dir, "team-2", "svc-5.yaml")
	renameInto(t, over, manifest("svc-5", "2"))
	s, walked = markLoad(t, l, over)
	if walked || arg(s, "svc-5") != "2" || arg(s, "new") != "1" || arg(s, "svc-4") != "1" || len(s.Containers) != 21 {
		t.Fatalf("renamed over (walked %v): %s", walked, describeSet(s))
	}
	// A full Load reads the same.
	full := load(t, dir, Set{}, insecure)
	if len(full.Containers) != len(s.Containers) || arg(full, "svc-5") != "2" || arg(full, "new") != "1" {
		t.Errorf("full read %s, event-driven %s", describeSet(full), describeSet(s))
	}
}

// A file removed is dropped at the Load its event marks, with its
// containers, without a walk.
func TestLoaderEventRemoved(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "team", "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, manifest("a", "1"))
	write(t, b, manifest("b", "1"))
	l := NewLoader(dir, insecure, Set{})
	if _, _, err := l.Load(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	s, walked := markLoad(t, l, a)
	if walked {
		t.Error("the Load for a removed file walked the directories")
	}
	if s.Containers["a"] != nil || s.Files[a] != nil || arg(s, "b") != "1" || len(s.Files) != 1 {
		t.Fatalf("after the removal: %s", describeSet(s))
	}
	// Created again.
	write(t, a, manifest("a", "2"))
	if s, _ := markLoad(t, l, a); arg(s, "a") != "2" {
		t.Fatalf("created again: %s", describeSet(s))
	}
}

// An event naming a directory (new, with files already in it; one even
// named like a manifest) walks the directories, and sees its files.
func TestLoaderEventNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	l := NewLoader(dir, insecure, Set{})
	if _, _, err := l.Load(); err != nil {
		t.Fatal(err)
	}
	// Made elsewhere and renamed in whole, as a checkout or a copy may.
	for _, sub := range []string{"team", "extra.yaml"} {
		staging := filepath.Join(t.TempDir(), sub)
		write(t, filepath.Join(staging, "x.yaml"), manifest("x-"+strings.TrimSuffix(sub, ".yaml"), "1"))
		write(t, filepath.Join(staging, "deeper", "y.yaml"), manifest("y-"+strings.TrimSuffix(sub, ".yaml"), "1"))
		if err := os.Rename(staging, filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
		s, walked := markLoad(t, l, filepath.Join(dir, sub))
		if !walked {
			t.Errorf("%s: the Load for a new directory did not walk", sub)
		}
		name := strings.TrimSuffix(sub, ".yaml")
		if arg(s, "x-"+name) != "1" || arg(s, "y-"+name) != "1" || arg(s, "a") != "1" || len(s.Errors()) != 0 {
			t.Fatalf("after %s: %s %v", sub, describeSet(s), s.Errors())
		}
		if !slices.Contains(l.Dirs(), filepath.Join(dir, sub, "deeper")) {
			t.Errorf("%s/deeper not among the directories to watch: %v", sub, l.Dirs())
		}
	}
	// A file in the new directory is now read on its event.
	x := filepath.Join(dir, "team", "deeper", "y.yaml")
	renameInto(t, x, manifest("y-team", "2"))
	if s, walked := markLoad(t, l, x); walked || arg(s, "y-team") != "2" {
		t.Fatalf("in the new directory (walked %v): %s", walked, describeSet(s))
	}
}

// A git-sync swap (the manifests path is a symlink whose target is
// replaced, the old target then removed) is read in full even when the
// marks name only files of the old target: the Set is the new revision's,
// never a mix.
func TestLoaderEventSymlinkSwap(t *testing.T) {
	g := &gitSync{t: t, root: t.TempDir()}
	old := g.publish(revFiles(1))
	l := NewLoader(g.link(), insecure, Set{})
	if s, _, err := l.Load(); err != nil || len(s.Containers) != 4 {
		t.Fatalf("first: %s %v", describeSet(s), err)
	}
	g.publish(revFiles(2))
	if err := os.Remove(filepath.Join(old, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	s, walked := markLoad(t, l, filepath.Join(old, "web.yaml"))
	if !walked {
		t.Error("the Load after a swap did not walk")
	}
	if len(s.Containers) != 4 || arg(s, "web") != "2" || arg(s, "db") != "2" || arg(s, "queue") != "2" || s.Revision != fmt.Sprintf("%040x", 2) {
		t.Fatalf("after the swap: %s", describeSet(s))
	}
}

// Files the event-driven Load cannot trust events for are read at every
// Load: a ConfigMap-style symlink (its target changes in a dot-directory,
// not walked) and a file with a second hard link outside the directory.
func TestLoaderEventReadsLinksEveryTime(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_01")
	write(t, filepath.Join(ts, "web.yaml"), manifest("web", "1"))
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "web.yaml"), filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "db.yaml")
	write(t, outside, manifest("db", "1"))
	if err := os.Link(outside, filepath.Join(dir, "db.yaml")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.yaml")
	write(t, other, manifest("other", "1"))
	l := NewLoader(dir, insecure, Set{})
	if s, _, err := l.Load(); err != nil || arg(s, "web") != "1" || arg(s, "db") != "1" {
		t.Fatalf("first: %s %v", describeSet(s), err)
	}
	// Neither change has an event in a directory walked.
	write(t, filepath.Join(ts, "web.yaml"), manifest("web", "2"))
	write(t, outside, manifest("db", "2"))
	renameInto(t, other, manifest("other", "2"))
	s, walked := markLoad(t, l, other)
	if walked {
		t.Error("the Load walked the directories")
	}
	if arg(s, "web") != "2" || arg(s, "db") != "2" || arg(s, "other") != "2" {
		t.Fatalf("after the changes: %s", describeSet(s))
	}
}

// A file rewritten in place with the same size within one clock tick
// keeps its stat; its mark gets it read by the event-driven Load.
func TestLoaderEventSameSizeRewrite(t *testing.T) {
	dir := coarseDir(t)
	file := filepath.Join(dir, "team", "a.yaml")
	write(t, file, manifest("a", "0"))
	for i := 0; i < 10; i++ {
		write(t, filepath.Join(dir, "team", fmt.Sprintf("b%d.yaml", i)), manifest(fmt.Sprintf("b%d", i), "0"))
	}
	l := NewLoader(dir, insecure, Set{})
	if _, _, err := l.Load(); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for i := 1; i <= 50; i++ {
		v := fmt.Sprint(i % 10)
		before := stampAt(t, file)
		write(t, file, manifest("a", v))
		if stampAt(t, file) == before {
			kept++
		}
		s, walked := markLoad(t, l, file)
		if walked {
			t.Fatal("the Load for a rewritten file walked the directories")
		}
		if arg(s, "a") != v || len(s.Containers) != 11 {
			t.Fatalf("rewrite %d (stat kept %d times so far): %s, want a@%s", i, kept, describeSet(s), v)
		}
	}
	if kept == 0 {
		t.Fatal("no rewrite kept the file's stat: the case this test is for never happened")
	}
}
