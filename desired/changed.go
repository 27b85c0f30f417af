package desired

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// ChangedFields lists the manifest fields whose normalized values differ
// between two definitions of a container, in manifest order, for messages
// such as "recreated: spec.command changed". Spelling alone (256Mi versus
// 268435456, TERM versus SIGTERM, key order) is not a change. It returns
// nil when both manifests are equal, and ["spec"] when either Container
// lacks its Manifest.
func ChangedFields(old, new *Container) []string {
	if old == nil || new == nil || old.Manifest == nil || new.Manifest == nil {
		return []string{"spec"}
	}
	a, b := old.Manifest, new.Manifest
	var out []string
	check := func(name string, x, y any) {
		if !reflect.DeepEqual(x, y) {
			out = append(out, name)
		}
	}
	emptyNil := func(m map[string]string) map[string]string {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	check("metadata.name", a.Metadata.Name, b.Metadata.Name)
	check("metadata.labels", emptyNil(a.Metadata.Labels), emptyNil(b.Metadata.Labels))
	s, t := &a.Spec, &b.Spec
	check("spec.image", s.Image, t.Image)
	if s.Image == t.Image && s.Image != "" && old.ImageDigest != "" && new.ImageDigest != "" {
		check("spec.image digest", old.ImageDigest, new.ImageDigest)
	}
	check("spec.imagePullPolicy", s.ImagePullPolicy, t.ImagePullPolicy)
	check("spec.root.path", s.Root.Path, t.Root.Path)
	check("spec.root.readonly", s.Root.Readonly, t.Root.Readonly)
	check("spec.command", s.Command, t.Command)
	check("spec.args", s.Args, t.Args)
	check("spec.env", emptyNil(s.Env), emptyNil(t.Env))
	check("spec.workingDir", s.WorkingDir, t.WorkingDir)
	check("spec.user", userOf(s), userOf(t))
	check("spec.hostname", s.Hostname, t.Hostname)
	check("spec.network", s.Network, t.Network)
	if len(s.Mounts) != 0 || len(t.Mounts) != 0 {
		check("spec.mounts", s.Mounts, t.Mounts)
	}
	check("spec.resources.memory", s.Resources.Memory, t.Resources.Memory)
	check("spec.resources.cpu", s.Resources.CPUMillis, t.Resources.CPUMillis)
	check("spec.resources.pids", s.Resources.Pids, t.Resources.Pids)
	check("spec.capabilities.add", s.Capabilities.Add, t.Capabilities.Add)
	check("spec.capabilities.drop", s.Capabilities.Drop, t.Capabilities.Drop)
	check("spec.restart", s.Restart, t.Restart)
	check("spec.stop.signal", s.Stop.Signal, t.Stop.Signal)
	check("spec.stop.timeout", s.Stop.Timeout, t.Stop.Timeout)
	check("spec.runtime", runtimeOrNative(s.Runtime), runtimeOrNative(t.Runtime))
	check("spec.init", s.Init, t.Init)
	check("spec.seccomp", s.Seccomp, t.Seccomp)
	if s.Seccomp == t.Seccomp && !bytes.Equal(s.SeccompProfile, t.SeccompProfile) {
		out = append(out, "spec.seccomp file")
	}
	check("spec.notify", s.Notify, t.Notify)
	check("spec.userns", s.Userns, t.Userns)
	if !jsonEqual(s.OCI, t.OCI) {
		out = append(out, "spec.oci")
	}
	return out
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func runtimeOrNative(r string) string {
	if r == "" {
		return RuntimeNative
	}
	return r
}

// userOf is spec.user as compared: "image" when the image's applies.
func userOf(s *ManifestSpec) any {
	if s.UserFromImage {
		return "image"
	}
	return s.User
}
