//go:build !reconciled_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/daemon"
	unit "reconciled.dev/reconciled/packaging/systemd"
)

func init() {
	register(&command{
		name:    "install",
		summary: "install this binary, the systemd unit and the manifests directory",
		run:     runInstall,
	})
}

const installSynopsis = `install [--root DIR] [--prefix DIR] [--unit-dir DIR] [--manifests DIR]

Puts this binary at ROOT/PREFIX/bin/reconciled, the systemd unit at
ROOT/UNITDIR/reconciled.service (its ExecStart naming PREFIX/bin/reconciled
and, when it is not the default, --manifests MANIFESTS) and an empty
manifests directory (mode 0755, owned by root) at ROOT/MANIFESTS.
Files are replaced atomically; an existing manifests directory is kept as it
is. --root (like make's DESTDIR) installs into a staging tree. It starts
nothing: then run 'systemctl daemon-reload && systemctl enable --now reconciled'.`

// installOptions are where install puts things; Root is prepended to every
// other path.
type installOptions struct {
	Root, Prefix, UnitDir, Manifests string
}

func runInstall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("install", installSynopsis, stderr)
	var o installOptions
	fs.StringVar(&o.Root, "root", "/", "root of the tree to install into (DESTDIR)")
	fs.StringVar(&o.Prefix, "prefix", "/usr/local", "installation prefix: the binary goes to PREFIX/bin")
	fs.StringVar(&o.UnitDir, "unit-dir", "/etc/systemd/system", "directory of the systemd unit")
	fs.StringVar(&o.Manifests, "manifests", daemon.DefaultManifests, "manifests directory to create")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "reconciled install: unexpected argument %q\n", pos[0])
		fs.Usage()
		return 2
	}
	for _, p := range []struct{ flag, v string }{{"prefix", o.Prefix}, {"unit-dir", o.UnitDir}, {"manifests", o.Manifests}} {
		if !filepath.IsAbs(p.v) {
			fmt.Fprintf(stderr, "reconciled install: --%s %q: must be an absolute path (it is the path on the installed host)\n", p.flag, p.v)
			return 2
		}
		// The unit file names these paths on lines of their own.
		if strings.ContainsFunc(p.v, unicode.IsControl) {
			fmt.Fprintf(stderr, "reconciled install: --%s %q: a path with control characters cannot be written into a systemd unit\n", p.flag, p.v)
			return 2
		}
	}
	if o.Root == "" {
		o.Root = "/"
	}
	done, err := install(o, "/proc/self/exe")
	for _, d := range done {
		fmt.Fprintf(stdout, "installed %s\n", d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "reconciled install: %v\n", err)
		return 1
	}
	if filepath.Clean(o.Root) == "/" {
		fmt.Fprintln(stdout, "now run: systemctl daemon-reload && systemctl enable --now reconciled")
	}
	return 0
}

// renderUnit is the shipped unit with ExecStart naming bin and, unless it
// is the default, the manifests directory (which the Description line then
// names too): the installed service watches the directory install made.
func renderUnit(bin, manifests string) (string, error) {
	old := "ExecStart=" + unit.DefaultBinary + " run "
	if strings.Count(unit.Unit, old) != 1 {
		return "", fmt.Errorf("the embedded unit has no single line starting with %q", old)
	}
	exec := "ExecStart=" + systemdQuote(bin) + " run "
	text := unit.Unit
	if manifests = filepath.Clean(manifests); manifests != daemon.DefaultManifests {
		exec += "--manifests " + systemdQuote(manifests) + " "
		desc := "(manifests in " + daemon.DefaultManifests + ")\n"
		if strings.Count(text, desc) != 1 {
			return "", fmt.Errorf("the embedded unit's Description does not end with %q", desc)
		}
		text = strings.Replace(text, desc, "(manifests in "+strings.ReplaceAll(manifests, "%", "%%")+")\n", 1)
	}
	return strings.Replace(text, old, exec, 1), nil
}

// systemdQuote is path as one word of an ExecStart line: as it is when it
// holds nothing systemd would read otherwise, else in double quotes with
// '\\' and '"' escaped; '%' (a specifier) and '$' (a variable) are doubled
// either way. Control characters are refused before (runInstall).
func systemdQuote(path string) string {
	plain := true
	for _, r := range path {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@,=%$", r)) {
			plain = false
			break
		}
	}
	s := strings.NewReplacer("%", "%%", "$", "$$").Replace(path)
	if plain {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// install copies the binary at self and writes the unit and the manifests
// directory under o.Root. It returns what it installed, in order.
func install(o installOptions, self string) ([]string, error) {
	bin := filepath.Join(o.Prefix, "bin", "reconciled")
	text, err := renderUnit(bin, o.Manifests)
	if err != nil {
		return nil, err
	}
	var done []string
	exe, err := os.ReadFile(self)
	if err != nil {
		return nil, fmt.Errorf("unable to read this binary (%s): %w", self, err)
	}
	dst := filepath.Join(o.Root, bin)
	if err := writeInstalled(dst, exe, 0o755); err != nil {
		return done, err
	}
	done = append(done, dst)
	dst = filepath.Join(o.Root, o.UnitDir, "reconciled.service")
	if err := writeInstalled(dst, []byte(text), 0o644); err != nil {
		return done, err
	}
	done = append(done, dst)
	dst = filepath.Join(o.Root, o.Manifests)
	created, err := makeManifestsDir(dst)
	if err != nil {
		return done, err
	}
	if created {
		done = append(done, dst+"/")
	}
	return done, nil
}

// writeInstalled replaces path with data (temp file, fsync, rename, fsync
// of the directory: a binary being run is replaced, not overwritten),
// creating its directory (0755).
func writeInstalled(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unable to create %s: %w", dir, err)
	}
	if err := atomicfile.Write(dir, filepath.Base(path), data, mode, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to install %s: %w", path, err)
	}
	return nil
}

// makeManifestsDir creates dir (mode 0755, owned by root when we are
// root) unless it exists; an existing one is left as it is.
func makeManifestsDir(dir string) (bool, error) {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
		return false, nil
	case err == nil:
		return false, fmt.Errorf("%s exists and is not a directory; move it away and run install again", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, fmt.Errorf("unable to create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return false, fmt.Errorf("unable to create %s: %w", dir, err)
	}
	// The umask may have taken bits away; the loader wants no group or
	// other write.
	if err := os.Chmod(dir, 0o755); err != nil {
		return true, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 0, 0); err != nil {
			return true, fmt.Errorf("unable to give %s to root: %w", dir, err)
		}
	}
	return true, nil
}
