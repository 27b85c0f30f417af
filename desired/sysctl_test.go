package desired

import (
	"slices"
	"strings"
	"testing"
)

func TestParseSysctlNeedsItsNamespace(t *testing.T) {
	head := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /}\n  command: [x]\n"
	tests := []struct{ name, src, want string }{
		{"net without a network namespace", "  oci:\n    linux:\n      sysctl: {net.ipv4.ping_group_range: \"0 1\"}\n",
			`web.yaml:9: spec.oci.linux.sysctl.net.ipv4.ping_group_range: sysctl "net.ipv4.ping_group_range" needs a network namespace of the container's own, or it would change the host's value (network: private gives one)`},
		{"a host-wide sysctl", "  network: private\n  oci:\n    linux:\n      sysctl: {vm.swappiness: \"1\"}\n",
			`web.yaml:10: spec.oci.linux.sysctl.vm.swappiness: sysctl "vm.swappiness" is not in a namespace of the container's own: setting it would change the host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("web.yaml", []byte(head+tt.src), ParseOptions{})
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !slices.Contains(got, tt.want) {
				t.Errorf("want\n  %s\ngot\n  %s", tt.want, strings.Join(got, "\n  "))
			}
		})
	}
	// With its own namespaces (private network; IPC is always private).
	if _, errs := Parse("web.yaml", []byte(head+"  network: private\n  oci:\n    linux:\n      sysctl: {net.ipv4.ip_forward: \"1\", fs.mqueue.queues_max: \"7\"}\n"), ParseOptions{}); len(errs) > 0 {
		t.Errorf("sysctls in the container's own namespaces: %v", errs)
	}
}

func TestParseMountTargetOnReadonlyHostRoot(t *testing.T) {
	src := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /, readonly: true}\n  command: [x]\n  mounts:\n    - {type: tmpfs, target: /nonexistent/scratch}\n    - {type: tmpfs, target: /tmp}\n"
	_, errs := Parse("web.yaml", []byte(src), ParseOptions{})
	want := "web.yaml:8: spec.mounts[0].target: /nonexistent/scratch does not exist on the host, and a read-only host root gets no mount points made in it (create it on the host, or run an image)"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("errors %v, want just\n  %s", errs, want)
	}
	if _, errs := Parse("web.yaml", []byte(strings.Replace(src, "readonly: true", "readonly: false", 1)), ParseOptions{}); len(errs) != 0 {
		t.Errorf("a writable host root may get mount points: %v", errs)
	}
}
