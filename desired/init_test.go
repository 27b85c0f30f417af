package desired

import (
	"strings"
	"testing"
)

// spec.init: true asks the executor for its init through the reserved
// annotation, changes the hash (and ChangedFields names it), and is
// refused where no init would run.
func TestParseInit(t *testing.T) {
	plain := parseOne(t, base)
	c := parseOne(t, base+"  init: true\n")
	if !c.Manifest.Spec.Init || c.Spec.Annotations[AnnotationInit] != "true" {
		t.Fatalf("init: true: manifest %v, annotations %v", c.Manifest.Spec.Init, c.Spec.Annotations)
	}
	if _, ok := plain.Spec.Annotations[AnnotationInit]; ok || plain.Manifest.Spec.Init {
		t.Fatalf("without init: annotations %v", plain.Spec.Annotations)
	}
	off := parseOne(t, base+"  init: false\n")
	if off.Hash != plain.Hash {
		t.Errorf("init: false changes the hash")
	}
	if c.Hash == plain.Hash {
		t.Errorf("init: true leaves the hash as it was: the container would not be recreated")
	}
	if got := ChangedFields(plain, c); len(got) != 1 || got[0] != "spec.init" {
		t.Errorf("ChangedFields = %v, want [spec.init]", got)
	}
	for _, tc := range []struct{ src, want string }{
		{"  init: yes please\n", `web.yaml:8: spec.init: must be true or false`},
		{"  runtime: runc\n  init: true\n", `web.yaml:9: spec.init: only the native runtime has an init (spec.runtime is runc): remove init: true, or use runtime: native`},
		{"  oci: {annotations: {dev.reconciled.init: \"true\"}}\n", `spec.oci.annotations.dev.reconciled.init: annotation dev.reconciled.init is reserved (use spec.init: true)`},
	} {
		_, errs := Parse("web.yaml", []byte(base+tc.src), ParseOptions{})
		if got := Errors(errs).Error(); !strings.Contains(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.src, got, tc.want)
		}
	}
}
