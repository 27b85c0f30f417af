package imageref

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	d := "sha256:" + strings.Repeat("4f", 32)
	tests := []struct{ in, want, short string }{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
		{"library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
		{"team/app", "docker.io/team/app:latest", "team/app:latest"},
		{"localhost/app", "localhost/app:latest", "localhost/app:latest"},
		{"localhost:5000/a/b/c:v1.2-rc_3", "localhost:5000/a/b/c:v1.2-rc_3", "localhost:5000/a/b/c:v1.2-rc_3"},
		{"registry.example.com/team/app:1.4@" + d, "registry.example.com/team/app:1.4@" + d, "registry.example.com/team/app:1.4@" + d},
		{"127.0.0.1:5000/app@" + d, "127.0.0.1:5000/app@" + d, "127.0.0.1:5000/app@" + d},
		{"[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"},
		{"team/a__b.c-d---e/f_g", "docker.io/team/a__b.c-d---e/f_g:latest", "team/a__b.c-d---e/f_g:latest"},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if r.String() != tt.want || r.Short() != tt.short {
			t.Errorf("Parse(%q) = %q (short %q), want %q (%q)", tt.in, r.String(), r.Short(), tt.want, tt.short)
		}
		if again, err := Normalize(r.String()); err != nil || again != r.String() {
			t.Errorf("normalizing %q again gave %q, %v", r.String(), again, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		"", " busybox", "Busybox", "busybox:", "busybox:-x", "busybox:" + strings.Repeat("a", 129),
		"busybox@sha256:abc", "busybox@md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("a", 64),
		"@sha256:" + strings.Repeat("a", 64), "a//b", "/a", "a/", "a..b", "a-", "-a", "host:port/app",
		"host:5000:6000/app", "a b", "ex ample.com/app", "bad_host.com/app", "app:tag@", strings.Repeat("a/", 130) + "a",
	} {
		if r, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %q, want an error", in, r)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q): %v does not wrap ErrInvalid", in, err)
		}
	}
}

func TestInsecure(t *testing.T) {
	for in, want := range map[string]bool{
		"localhost:5000/a": true, "127.0.0.1:41234/a": true, "localhost/a": true, "[::1]:5000/a": true,
		"busybox": false, "127.0.0.2:5000/a": false, "localhost.example.com/a": false,
	} {
		r, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if r.Insecure() != want {
			t.Errorf("%q: Insecure() = %v, want %v", in, r.Insecure(), want)
		}
	}
}
