package desired

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzParse: Parse never panics, and returns either errors that each name
// the file and say something, or containers whose specs pass the same
// checks a merged oci fragment must pass, and decode strictly.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "---\n" + base))
	f.Add([]byte(base + "  resources: {memory: 256Mi, cpu: 500m, pids: 10}\n  stop: {signal: TERM, timeout: 5s}\n"))
	f.Add([]byte(base + "  mounts: [{type: tmpfs, target: /tmp, size: 1Mi}, {type: bind, source: /etc, target: /mnt}]\n"))
	f.Add([]byte(base + "  oci: {process: {args: [x]}, linux: {namespaces: null}}\n"))
	f.Add([]byte(`{"apiVersion":"reconciled.dev/v1","kind":"Container","metadata":{"name":"a"},"spec":{"root":{"path":"/"},"command":["x"]}}`))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("- [}\n"))
	if files, err := filepath.Glob("testdata/*.yaml"); err == nil {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, errs := Parse("f.yaml", data, ParseOptions{SkipHostChecks: true})
		if len(errs) > 0 {
			if cs != nil {
				t.Fatal("containers returned with errors")
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Msg == "" || e.Line < 0 {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, c := range cs {
			if names[c.Name] {
				t.Fatalf("name %q twice", c.Name)
			}
			names[c.Name] = true
			if c.Hash == "" || c.BaseHash == "" || c.Spec.Annotations[AnnotationSpecHash] != c.Hash || c.Spec.Annotations[AnnotationName] != c.Name {
				t.Fatalf("hash or annotations missing: %+v", c)
			}
			bare := *c.Spec
			bare.Annotations = map[string]string{AnnotationName: c.Name}
			if e := checkSpec(&bare, &bare); e != nil {
				t.Fatalf("generated spec invalid: %v %s", e.path, e.msg)
			}
			b, err := json.Marshal(c.Spec)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			var s specs.Spec
			if err := dec.Decode(&s); err != nil {
				t.Fatalf("generated spec does not decode: %v", err)
			}
			// Parsing again gives the same hash.
			again, errs := Parse("f.yaml", data, ParseOptions{SkipHostChecks: true})
			if len(errs) > 0 || len(again) != len(cs) {
				t.Fatalf("not deterministic: %v", Errors(errs))
			}
			for i := range cs {
				if again[i].Hash != cs[i].Hash {
					t.Fatal("hash not deterministic")
				}
			}
		}
	})
}
