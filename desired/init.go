package desired

// initField parses spec.init. Only the native runtime has the init; an
// OCI CLI runtime would silently run without it, so it is refused there.
func (p *parser) initField(f field, s *ManifestSpec) {
	v, ok := p.boolean(f.val, "spec.init")
	if !ok || !v {
		return
	}
	if s.Runtime != RuntimeNative {
		p.errorf(f.key, "spec.init", "only the native runtime has an init (spec.runtime is %s): remove init: true, or use runtime: native", s.Runtime)
		return
	}
	s.Init = true
}
