package desired

import (
	"slices"
	"strings"
	"testing"
)

const imageHead = "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n"

func TestParseImage(t *testing.T) {
	c := parseOne(t, imageHead+"  image: busybox\n")
	if c.Image != "docker.io/library/busybox:latest" || c.Manifest.Spec.Image != c.Image {
		t.Errorf("image = %q, manifest %q; want docker.io/library/busybox:latest", c.Image, c.Manifest.Spec.Image)
	}
	if c.PullPolicy != PullIfNotPresent {
		t.Errorf("pull policy = %q, want IfNotPresent", c.PullPolicy)
	}
	ms := c.Manifest.Spec
	if !ms.Root.Readonly || ms.Root.Path != "" {
		t.Errorf("root = %+v, want read-only with no path", ms.Root)
	}
	if !ms.UserFromImage || ms.WorkingDir != "" || ms.Stop.Signal != "" {
		t.Errorf("user from image %v, workingDir %q, stop signal %q: want the image's", ms.UserFromImage, ms.WorkingDir, ms.Stop.Signal)
	}
	if !c.Unresolved() || c.Hash != "" || c.ImageWait == "" {
		t.Errorf("a parsed image container must be unresolved with no hash (hash %q, wait %q)", c.Hash, c.ImageWait)
	}

	c = parseOne(t, imageHead+"  image: localhost:5000/team/app:1.4\n  imagePullPolicy: Never\n  root: {readonly: false}\n  command: [/app]\n  args: [--port, \"8080\"]\n  user: \"10:20\"\n  workingDir: /srv\n")
	if c.Image != "localhost:5000/team/app:1.4" || c.PullPolicy != PullNever {
		t.Errorf("image %q policy %q", c.Image, c.PullPolicy)
	}
	ms = c.Manifest.Spec
	if ms.Root.Readonly || ms.UserFromImage || ms.User != (User{10, 20}) || ms.WorkingDir != "/srv" ||
		!slices.Equal(ms.Args, []string{"--port", "8080"}) {
		t.Errorf("spec = %+v", ms)
	}
}

func TestParseImageErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"image and root.path", "  image: busybox\n  root: {path: /}\n", `web.yaml:6: spec.root.path: spec.image and spec.root.path are exclusive: the image is the root filesystem (remove one; root.readonly may stay)`},
		{"malformed reference", "  image: Busybox:latest\n", `web.yaml:5: spec.image: invalid image reference "Busybox:latest": "Busybox": repository names are lowercase (write e.g. busybox, busybox:1.36 or registry.example.com/team/app:1.4@sha256:…)`},
		{"bad digest", "  image: busybox@sha256:abc\n", `web.yaml:5: spec.image: invalid image reference "busybox@sha256:abc": digest "sha256:abc": sha256 takes 64 lowercase hex digits (write e.g. busybox, busybox:1.36 or registry.example.com/team/app:1.4@sha256:…)`},
		{"policy without image", "  root: {path: /}\n  command: [x]\n  imagePullPolicy: Always\n", `web.yaml:7: spec.imagePullPolicy: only used with spec.image; remove it or add an image`},
		{"bad policy", "  image: busybox\n  imagePullPolicy: always\n", `web.yaml:6: spec.imagePullPolicy: "always" is not a pull policy (use IfNotPresent, Always or Never)`},
		{"empty command with image", "  image: busybox\n  command: []\n", `web.yaml:6: spec.command: must not be empty; leave it out to run the image's entrypoint`},
		{"neither image nor root", "  command: [x]\n", `web.yaml:5: spec.root: required unless spec.image is given (e.g. image: busybox, or root: {path: /, readonly: true})`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("web.yaml", []byte(imageHead+tt.src), ParseOptions{})
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !slices.Contains(got, tt.want) {
				t.Errorf("want error\n  %s\ngot\n  %s", tt.want, strings.Join(got, "\n  "))
			}
		})
	}
}

var testImage = ImageInfo{
	Digest:     "sha256:" + strings.Repeat("a", 64),
	RootPath:   "/run/reconciled/rootfs/web",
	Entrypoint: []string{"/entry"},
	Cmd:        []string{"serve", "--fast"},
	Env:        []string{"PATH=/opt/bin:/bin", "LANG=C.UTF-8", "MODE=image"},
	WorkingDir: "/app",
	StopSignal: "SIGQUIT",
	HasUser:    true, UID: 1234, GID: 2345, AdditionalGids: []uint32{7},
}

func TestWithImage(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		args     []string
		env      []string
		cwd      string
		uid, gid uint32
		stop     string
	}{
		{"image defaults", "", []string{"/entry", "serve", "--fast"},
			[]string{"LANG=C.UTF-8", "MODE=image", "PATH=/opt/bin:/bin"}, "/app", 1234, 2345, "SIGQUIT"},
		{"command replaces entrypoint and cmd", "  command: [/bin/sh]\n", []string{"/bin/sh"}, nil, "", 0, 0, ""},
		{"args replace cmd", "  args: [once]\n", []string{"/entry", "once"}, nil, "", 0, 0, ""},
		{"command and args", "  command: [/x]\n  args: [y]\n", []string{"/x", "y"}, nil, "", 0, 0, ""},
		{"manifest env wins", "  env: {MODE: manifest, EXTRA: \"1\"}\n", nil,
			[]string{"EXTRA=1", "LANG=C.UTF-8", "MODE=manifest", "PATH=/opt/bin:/bin"}, "", 0, 0, ""},
		{"manifest user, dir and signal win", "  user: \"5:6\"\n  workingDir: /w\n  stop: {signal: INT}\n", nil, nil, "/w", 5, 6, "SIGINT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseOne(t, imageHead+"  image: busybox\n"+tt.spec)
			r, err := c.WithImage(testImage)
			if err != nil {
				t.Fatal(err)
			}
			p := r.Spec.Process
			if tt.args != nil && !slices.Equal(p.Args, tt.args) {
				t.Errorf("args = %q, want %q", p.Args, tt.args)
			}
			if tt.env != nil && !slices.Equal(p.Env, tt.env) {
				t.Errorf("env = %q, want %q", p.Env, tt.env)
			}
			if tt.cwd != "" && p.Cwd != tt.cwd {
				t.Errorf("cwd = %q, want %q", p.Cwd, tt.cwd)
			}
			if tt.uid != 0 && (p.User.UID != tt.uid || p.User.GID != tt.gid) {
				t.Errorf("user = %d:%d, want %d:%d", p.User.UID, p.User.GID, tt.uid, tt.gid)
			}
			if tt.stop != "" && r.StopSignal != tt.stop {
				t.Errorf("stop signal = %q, want %q", r.StopSignal, tt.stop)
			}
			if r.Spec.Root.Path != testImage.RootPath || !r.Spec.Root.Readonly {
				t.Errorf("root = %+v", r.Spec.Root)
			}
			if r.ImageDigest != testImage.Digest || r.Unresolved() || r.Hash == "" ||
				r.Spec.Annotations[AnnotationSpecHash] != r.Hash || r.Spec.Annotations[AnnotationImageDigest] != testImage.Digest {
				t.Errorf("resolved container: digest %q hash %q annotations %v", r.ImageDigest, r.Hash, r.Spec.Annotations)
			}
			if !c.Unresolved() || c.Spec == r.Spec {
				t.Errorf("WithImage changed its receiver")
			}
		})
	}
}

func TestWithImageDefaultsAndHash(t *testing.T) {
	c := parseOne(t, imageHead+"  image: busybox\n")
	img := ImageInfo{Digest: testImage.Digest, RootPath: "/r", Cmd: []string{"sh"}}
	r, err := c.WithImage(img)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Spec.Process
	if !slices.Equal(p.Env, []string{DefaultPath}) || p.Cwd != "/" || p.User.UID != 0 || r.StopSignal != DefaultStopSignal {
		t.Errorf("defaults: env %q cwd %q uid %d stop %q", p.Env, p.Cwd, p.User.UID, r.StopSignal)
	}
	if len(p.Capabilities.Effective) == 0 {
		t.Errorf("root in an image gets effective capabilities")
	}
	// Reformatting changes nothing; another digest changes the hash.
	c2 := parseOne(t, imageHead+"  image: \"docker.io/library/busybox\"   # same\n")
	r2, _ := c2.WithImage(img)
	if r2.Hash != r.Hash {
		t.Errorf("the same image spelled differently changed the hash")
	}
	img.Digest = "sha256:" + strings.Repeat("b", 64)
	r3, _ := c.WithImage(img)
	if r3.Hash == r.Hash || r3.BaseHash == r.BaseHash {
		t.Errorf("a new digest must change the hash")
	}
	if got := ChangedFields(r, r3); !slices.Equal(got, []string{"spec.image digest"}) {
		t.Errorf("ChangedFields = %q, want spec.image digest", got)
	}
	if _, err := c.WithImage(ImageInfo{Digest: testImage.Digest, RootPath: "/r"}); err == nil ||
		!strings.Contains(err.Error(), "no Entrypoint or Cmd: give spec.command") {
		t.Errorf("an image with nothing to run: err = %v", err)
	}
}
