package desired

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil"
)

// A file of about 130 KB that repeats one 100 KB string through 3,000
// aliases (300 MB once expanded) is refused at the alias that takes the
// text reached through aliases beyond 4 MiB, at once and in little memory.
func TestParseAliasBytes(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	b.WriteString("  env:\n    BIG: &big \"" + strings.Repeat("x", 100<<10) + "\"\n  args:\n")
	argsLine := strings.Count(b.String(), "\n") // the line of "args:"
	for i := 0; i < 3000; i++ {
		b.WriteString("    - *big\n")
	}
	data := []byte(b.String())
	if len(data) > MaxFileSize {
		t.Fatalf("the file is %d bytes", len(data))
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	cs, errs := Parse("web.yaml", data, ParseOptions{})
	took := time.Since(start)
	runtime.ReadMemStats(&after)

	if took > time.Second {
		t.Errorf("Parse took %v", took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 50<<20 {
		t.Errorf("Parse allocated %d MB", alloc>>20)
	}
	if len(errs) != 1 || cs != nil {
		t.Fatalf("want one error, got %d containers and %v", len(cs), Errors(errs))
	}
	// The 41st alias passes 4 MiB (41 × 100 KiB).
	want := fmt.Sprintf("web.yaml:%d: spec.args[40]: alias *big takes the text reached through aliases in this file beyond 4194304 bytes (4 times the 1 MiB file limit); repeat less through aliases, or write the values out", argsLine+41)
	if got := errs[0].Error(); got != want {
		t.Errorf("error\n  %s\nwant\n  %s", got, want)
	}
}

// Aliases that repeat little stay valid; the bound counts a file's
// documents together; a node that contains itself is refused.
func TestParseAliasBytesOther(t *testing.T) {
	c := parseOne(t, base+"  env: {A: &a \"some value\", B: *a}\n  args: &args [x, y]\n  oci: {process: {args: *args}}\n")
	if c.Manifest.Spec.Env["B"] != "some value" {
		t.Errorf("env %v", c.Manifest.Spec.Env)
	}

	// Ten documents that each reach 500 KiB through aliases: 5 MiB in all.
	doc := base + "  env:\n    BIG: &big \"" + strings.Repeat("x", 100<<10) + "\"\n  args: [*big, *big, *big, *big, *big]\n"
	var b strings.Builder
	for i := 0; i < 10; i++ {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString(strings.Replace(doc, "name: web", fmt.Sprintf("name: web-%d", i), 1))
	}
	_, errs := Parse("web.yaml", []byte(b.String()), ParseOptions{})
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "alias *big takes the text reached through aliases in this file beyond") {
		t.Errorf("documents together: %v", Errors(errs))
	}

	_, errs = Parse("web.yaml", []byte(base+"  oci: &a {annotations: [*a]}\n"), ParseOptions{})
	if len(errs) != 1 || errs[0].Line != 8 || !strings.Contains(errs[0].Msg, "alias *a takes") {
		t.Errorf("self-containing node: %v", Errors(errs))
	}
}

func TestParseRootPathSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "current")
	if err := os.Symlink("rootfs", link); err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(base, "path: /}", "path: "+link+"}", 1)
	_, errs := Parse("web.yaml", []byte(src), ParseOptions{})
	want := "web.yaml:6: spec.root.path: " + link + " is a symlink to " + real + "; the root is mounted onto its own path, which cannot be a symlink: write the real path (" + real + ")"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors %v\nwant\n  %s", Errors(errs), want)
	}
	// The real path, and a path with a symlink above its end, are fine:
	// only the end is mounted onto.
	parseOne(t, strings.Replace(base, "path: /}", "path: "+real+"}", 1))
	if err := os.Mkdir(filepath.Join(real, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	parseOne(t, strings.Replace(base, "path: /}", "path: "+filepath.Join(link, "inner")+"}", 1))
	// Without host checks nothing is looked at.
	if _, errs := Parse("web.yaml", []byte(src), ParseOptions{SkipHostChecks: true}); len(errs) != 0 {
		t.Errorf("without host checks: %v", Errors(errs))
	}
}

func TestParseKernelRanges(t *testing.T) {
	tests := []struct {
		name, src, want string // want "" for valid
	}{
		{"pids 2^63-1", "  resources: {pids: 9223372036854775807}", `web.yaml:8: spec.resources.pids: "9223372036854775807" is out of range (1 to 4194304, the kernel's PID_MAX_LIMIT)`},
		{"pids beyond int64", "  resources: {pids: 99999999999999999999}", `web.yaml:8: spec.resources.pids: "99999999999999999999" is out of range (1 to 4194304, the kernel's PID_MAX_LIMIT)`},
		{"pids above PID_MAX_LIMIT", "  resources: {pids: 4194305}", `web.yaml:8: spec.resources.pids: "4194305" is out of range (1 to 4194304, the kernel's PID_MAX_LIMIT)`},
		{"pids PID_MAX_LIMIT", "  resources: {pids: 4194304}", ""},
		{"pids negative", "  resources: {pids: -5}", `web.yaml:8: spec.resources.pids: "-5" is not a positive integer (use e.g. 512)`},
		{"memory 8Ei", "  resources: {memory: 8Ei}", `web.yaml:8: spec.resources.memory: "8Ei" is out of range (6Mi to 8Ei less 4Ki (9223372036854771712))`},
		{"memory one byte too many", "  resources: {memory: \"9223372036854771713\"}", `web.yaml:8: spec.resources.memory: "9223372036854771713" is out of range (6Mi to 8Ei less 4Ki (9223372036854771712))`},
		{"memory largest", "  resources: {memory: \"9223372036854771712\"}", ""},
		{"memory 4Ei", "  resources: {memory: 4Ei}", ""},
		{"memory 6Mi", "  resources: {memory: 6Mi}", ""},
		{"memory too small", "  resources: {memory: 5Mi}", `web.yaml:8: spec.resources.memory: "5Mi" is below the minimum of 6Mi`},
		{"cpu 8193", "  resources: {cpu: 8193}", `web.yaml:8: spec.resources.cpu: "8193" is out of range (1m to 8192, the most CPUs a Linux kernel can be built for)`},
		{"cpu 1e15", "  resources: {cpu: 1e15}", `web.yaml:8: spec.resources.cpu: "1e15" is out of range (1m to 8192, the most CPUs a Linux kernel can be built for)`},
		{"cpu 8192", "  resources: {cpu: 8192}", ""},
		{"tmpfs below a page", "  mounts: [{type: tmpfs, target: /tmp, size: 100}]", `web.yaml:8: spec.mounts[0].size: "100" is out of range (4Ki to 8Ei less 4Ki (9223372036854771712); the kernel sizes tmpfs in pages of 4Ki)`},
		{"tmpfs 8Ei", "  mounts: [{type: tmpfs, target: /tmp, size: 8Ei}]", `web.yaml:8: spec.mounts[0].size: "8Ei" is out of range (4Ki to 8Ei less 4Ki (9223372036854771712); the kernel sizes tmpfs in pages of 4Ki)`},
		{"tmpfs one page", "  mounts: [{type: tmpfs, target: /tmp, size: 4Ki}]", ""},
		{"tmpfs zero", "  mounts: [{type: tmpfs, target: /tmp, size: 0}]", `web.yaml:8: spec.mounts[0].size: "0" is not a positive quantity (use e.g. 64Mi)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("web.yaml", []byte(base+tt.src+"\n"), ParseOptions{})
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Errorf("refused: %v", Errors(errs))
			case tt.want != "" && (len(errs) != 1 || errs[0].Error() != tt.want):
				t.Errorf("errors %v\nwant\n  %s", Errors(errs), tt.want)
			}
		})
	}
}

// trustTree makes, under a fresh root-owned 0755 directory: m (the
// manifests directory) and safe (a trusted directory outside it).
func trustTree(t *testing.T) (base, m, safe string) {
	t.Helper()
	testutil.RequireRoot(t)
	base = t.TempDir()
	m, safe = filepath.Join(base, "m"), filepath.Join(base, "safe")
	for _, d := range []string{base, m, safe} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base, m, safe
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// wantRefused checks that the only error of file is a refusal that
// contains reason.
func wantRefused(t *testing.T, s Set, file, reason string) {
	t.Helper()
	st := s.Files[file]
	if st == nil {
		t.Errorf("%s: no status (%s)", file, describeSet(s))
		return
	}
	if len(st.Errors) != 1 || !strings.Contains(st.Errors[0].Msg, "refused: ") || !strings.Contains(st.Errors[0].Msg, reason) {
		t.Errorf("%s: errors %v, want a refusal saying %q", filepath.Base(file), Errors(st.Errors), reason)
	}
}

// In strict mode every hop of the way to a manifest is checked, not only
// where it ends.
func TestScanStrictEveryHop(t *testing.T) {
	base, m, safe := trustTree(t)
	strict := Options{}

	// Trusted ways: a link to a trusted directory outside (absolute and
	// relative), and a ConfigMap-style ..data link inside.
	write(t, filepath.Join(safe, "ok.yaml"), manifest("ok", "1"))
	symlink(t, filepath.Join(safe, "ok.yaml"), filepath.Join(m, "ok.yaml"))
	write(t, filepath.Join(safe, "rel.yaml"), manifest("rel", "1"))
	symlink(t, "../safe/rel.yaml", filepath.Join(m, "rel.yaml"))
	write(t, filepath.Join(m, "..2024", "cm.yaml"), manifest("cm", "1"))
	symlink(t, "..2024", filepath.Join(m, "..data"))
	symlink(t, "..data/cm.yaml", filepath.Join(m, "cm.yaml"))
	s := load(t, m, Set{}, strict)
	if len(s.Containers) != 3 || len(s.Errors()) != 0 {
		t.Fatalf("trusted ways: %s %v", describeSet(s), s.Errors())
	}

	// A chain of links through a world-writable directory: m/a.yaml ->
	// ww/l2 -> safe/a.yaml. The link in ww can be swapped by anyone.
	ww := filepath.Join(base, "ww")
	mkdirMode(t, ww, 0o777)
	write(t, filepath.Join(safe, "a.yaml"), manifest("a", "1"))
	symlink(t, filepath.Join(safe, "a.yaml"), filepath.Join(ww, "l2"))
	symlink(t, filepath.Join(ww, "l2"), filepath.Join(m, "a.yaml"))

	// A link whose target passes through a world-writable directory:
	// mid/inner can be renamed away and replaced.
	mid := filepath.Join(base, "mid")
	mkdirMode(t, mid, 0o777)
	mkdirMode(t, filepath.Join(mid, "inner"), 0o755)
	write(t, filepath.Join(mid, "inner", "b.yaml"), manifest("b", "1"))
	symlink(t, filepath.Join(mid, "inner", "b.yaml"), filepath.Join(m, "b.yaml"))

	// Sticky is no better (as /tmp).
	sticky := filepath.Join(base, "sticky")
	mkdirMode(t, sticky, os.ModeSticky|0o777)
	mkdirMode(t, filepath.Join(sticky, "sub"), 0o755)
	write(t, filepath.Join(sticky, "sub", "c.yaml"), manifest("c", "1"))
	symlink(t, filepath.Join(sticky, "sub", "c.yaml"), filepath.Join(m, "c.yaml"))

	// A link owned by another user, in the middle of a chain.
	write(t, filepath.Join(safe, "d.yaml"), manifest("d", "1"))
	symlink(t, filepath.Join(safe, "d.yaml"), filepath.Join(safe, "d-link"))
	if err := os.Lchown(filepath.Join(safe, "d-link"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	symlink(t, filepath.Join(safe, "d-link"), filepath.Join(m, "d.yaml"))

	// A relative link that goes up and down through a writable directory.
	write(t, filepath.Join(mid, "inner", "e.yaml"), manifest("e", "1"))
	symlink(t, "../mid/inner/e.yaml", filepath.Join(m, "e.yaml"))

	s = load(t, m, Set{}, strict)
	wantRefused(t, s, filepath.Join(m, "a.yaml"), ww+" is writable by group or others (mode 0777")
	wantRefused(t, s, filepath.Join(m, "b.yaml"), mid+" is writable by group or others (mode 0777")
	wantRefused(t, s, filepath.Join(m, "c.yaml"), sticky+" is writable by group or others (mode 1777, sticky or not")
	wantRefused(t, s, filepath.Join(m, "d.yaml"), "the symlink "+filepath.Join(safe, "d-link")+" is owned by uid 1000, not root")
	wantRefused(t, s, filepath.Join(m, "e.yaml"), mid+" is writable by group or others")
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		if s.Containers[n] != nil {
			t.Errorf("%s applied through an untrusted way", n)
		}
	}
	if len(s.Containers) != 3 {
		t.Errorf("trusted files: %s", describeSet(s))
	}
	if s := load(t, m, Set{}, insecure); len(s.Containers) != 8 || len(s.Errors()) != 0 {
		t.Errorf("insecure: %s %v", describeSet(s), s.Errors())
	}

	// The way to the manifests path itself: a link whose target passes
	// through a world-writable directory.
	mkdirMode(t, filepath.Join(base, "mid2", "real"), 0o755)
	if err := os.Chmod(filepath.Join(base, "mid2"), 0o777); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(base, "mid2", "real", "f.yaml"), manifest("f", "1"))
	cur := filepath.Join(base, "current")
	symlink(t, filepath.Join(base, "mid2", "real"), cur)
	s = load(t, cur, Set{}, strict)
	if len(s.Containers) != 0 {
		t.Errorf("manifests path through a writable directory: %s", describeSet(s))
	}
	wantRefused(t, s, filepath.Join(cur, "f.yaml"), filepath.Join(base, "mid2")+" is writable by group or others")
}

// In a manifests directory that fails the strict check, a file that is
// gone is not a deletion: its containers stay, and its status says why.
func TestNextRefusedDirectoryKeepsGoneFiles(t *testing.T) {
	_, m, _ := trustTree(t)
	strict := Options{}
	a, b := filepath.Join(m, "a.yaml"), filepath.Join(m, "b.yaml")
	c := filepath.Join(m, "team", "c.yaml")
	write(t, a, manifest("a", "1"))
	write(t, b, manifest("b", "1"))
	write(t, c, manifest("c", "1"))
	mkdirMode(t, filepath.Join(m, "team"), 0o755)
	s1 := load(t, m, Set{}, strict)
	if len(s1.Containers) != 3 || len(s1.Errors()) != 0 {
		t.Fatalf("trusted: %s %v", describeSet(s1), s1.Errors())
	}

	// World-writable: whoever wrote there removes b.yaml and team/.
	if err := os.Chmod(m, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(m, "team")); err != nil {
		t.Fatal(err)
	}
	s2 := load(t, m, s1, strict)
	if arg(s2, "a") != "1" || arg(s2, "b") != "1" || arg(s2, "c") != "1" {
		t.Errorf("containers of a refused directory removed: %s", describeSet(s2))
	}
	for _, p := range []string{b, c} {
		wantRefused(t, s2, p, m+" is writable by group or others (mode 0777")
		if st := s2.Files[p]; st != nil && len(st.Errors) == 1 && !strings.Contains(st.Errors[0].Msg, "the file is gone") {
			t.Errorf("%s: %s", p, st.Errors[0].Msg)
		}
	}
	if e := s2.Files[c]; e != nil && len(e.Errors) == 1 && e.Errors[0].File != "team/c.yaml" {
		t.Errorf("file name %q", e.Errors[0].File)
	}
	// Again from there: still kept.
	s3 := load(t, m, s2, strict)
	if !s3.Equal(s2) {
		t.Errorf("second read: %s", describeSet(s3))
	}

	// Trusted again: the deletions apply.
	if err := os.Chmod(m, 0o755); err != nil {
		t.Fatal(err)
	}
	s4 := load(t, m, s3, strict)
	if arg(s4, "a") != "1" || s4.Containers["b"] != nil || s4.Containers["c"] != nil || len(s4.Errors()) != 0 || len(s4.Files) != 1 {
		t.Errorf("trusted again: %s %v", describeSet(s4), s4.Errors())
	}

	// Not strict: a deletion is a deletion.
	if err := os.Chmod(m, 0o777); err != nil {
		t.Fatal(err)
	}
	write(t, b, manifest("b", "1"))
	s5 := load(t, m, Set{}, insecure)
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	if s6 := load(t, m, s5, insecure); s6.Containers["b"] != nil {
		t.Errorf("insecure: %s", describeSet(s6))
	}
}

// The same through a Loader, where the removal is read without a walk.
func TestLoaderRefusedDirectoryKeepsGoneFiles(t *testing.T) {
	_, m, _ := trustTree(t)
	a, b := filepath.Join(m, "a.yaml"), filepath.Join(m, "b.yaml")
	write(t, a, manifest("a", "1"))
	write(t, b, manifest("b", "1"))
	l := NewLoader(m, Options{}, Set{})
	if s, _, err := l.Load(); err != nil || len(s.Containers) != 2 {
		t.Fatalf("first: %s %v", describeSet(s), err)
	}
	if err := os.Chmod(m, 0o777); err != nil {
		t.Fatal(err)
	}
	s, _ := markLoad(t, l, m)
	wantRefused(t, s, b, m+" is writable")
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	s, walked := markLoad(t, l, b)
	if walked {
		t.Error("the removal was read with a walk")
	}
	if arg(s, "b") != "1" {
		t.Errorf("removed in a refused directory: %s", describeSet(s))
	}
	wantRefused(t, s, b, "the file is gone")
}

// A manifests path that is missing behind a link in a writable directory
// is not "no containers": whoever can write there could make it so.
func TestScanMissingBehindUntrustedLink(t *testing.T) {
	base, m, _ := trustTree(t)
	holder := filepath.Join(base, "holder")
	mkdirMode(t, holder, 0o777)
	cur := filepath.Join(holder, "current")
	symlink(t, filepath.Join(base, "gone"), cur)
	_, err := Scan(cur, Options{})
	if err == nil || errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), holder+" is writable by group or others") {
		t.Errorf("strict: %v", err)
	}
	if _, err := Scan(cur, insecure); !errors.Is(err, ErrNotExist) {
		t.Errorf("insecure: %v", err)
	}
	// Behind trusted directories, missing is missing.
	if _, err := Scan(filepath.Join(m, "nope"), Options{}); !errors.Is(err, ErrNotExist) {
		t.Errorf("trusted: %v", err)
	}
}
