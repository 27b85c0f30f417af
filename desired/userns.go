package desired

import "runtime"

// ExecIntoUserns says whether the native runtime can exec a process into a
// container with a user namespace of its own (exec probes, HEALTHCHECK,
// `reconciled exec`): it needs executor/waiter's user-namespace joiner,
// which amd64 has (internal/daemon's TestExecIntoUsernsAgrees keeps the
// two in step).
var ExecIntoUserns = runtime.GOARCH == "amd64"

// userns reads spec.userns: host (the default) or auto. auto needs what
// the daemon can give a user namespace of its own: the native runtime, a
// root filesystem other than the host's (it is shown through an idmapped
// mount, which the host's / with its /proc and /sys cannot be), a user
// inside the 65,536 IDs mapped, and, where exec into a user namespace is
// not supported (ExecIntoUserns), no exec probe.
func (p *parser) userns(f field, s *ManifestSpec) {
	v, ok := p.str(f.val, "spec.userns")
	if !ok {
		return
	}
	switch v {
	case UsernsHost:
		return // normalized to ""
	case UsernsAuto:
	default:
		p.errorf(p.deref(f.val), "spec.userns", "%q is not a user namespace mode (use auto for 65,536 host IDs of the container's own, or host)", v)
		return
	}
	switch {
	case s.Runtime != RuntimeNative:
		p.errorf(f.key, "spec.userns", "userns: auto is done by the native runtime only (spec.runtime is %s): remove it, or use runtime: native", s.Runtime)
	case s.Image == "" && s.Root.Path == "/":
		p.errorf(f.key, "spec.userns", "userns: auto needs a root filesystem of the container's own (an image, or a directory in spec.root.path): the host's / cannot be shown through an idmapped mount")
	case s.User.UID >= UsernsSize || s.User.GID >= UsernsSize:
		p.errorf(f.key, "spec.userns", "spec.user %d:%d is outside the %d IDs a userns: auto container has (0-%d)", s.User.UID, s.User.GID, UsernsSize, UsernsSize-1)
	case s.Health != nil && s.Health.Exec != nil && !ExecIntoUserns:
		p.errorf(f.key, "spec.userns", "exec probes cannot run in a container with userns: auto on "+runtime.GOARCH+" (exec into a user namespace is not supported there); use an http or tcp probe, or remove userns")
	default:
		s.Userns = UsernsAuto
	}
}
