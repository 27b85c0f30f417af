package desired

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/sys"
)

// MaskedPaths and ReadonlyPaths are containerd's defaults
// (pkg/oci/spec.go: populateDefaultUnixSpec).
var (
	MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	ReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// defaultMounts is the minimal /dev, /proc and a read-only /sys, with
// containerd's options.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
}

// CPU period and the kubelet's bounds (pkg/kubelet/cm/helpers_linux.go).
const (
	cpuPeriod      = 100000
	minQuota       = 1000
	minShares      = 2
	maxShares      = 262144
	sharesPerCPU   = 1024
	milliCPUToCPU  = 1000
	defaultNoFiles = 1024
)

// BuildSpec converts a normalized manifest into a runtime spec, without the
// oci fragment and without the hash annotation. For a manifest with an
// image it is provisional: the image's part is missing (see WithImage).
//
// Capabilities follow containerd and moby (oci.SetCapabilities): for uid 0
// the set goes into bounding, effective and permitted; for any other uid
// into bounding only, which is what execve leaves a non-root process with.
// Inheritable and ambient stay empty (CVE-2022-24769).
func BuildSpec(m *Manifest) *specs.Spec {
	return buildSpec(m, nil)
}

// ImageInfo is what a container takes from its image: the image-spec's
// config, with the image's User already resolved through its own
// /etc/passwd and /etc/group (a name means nothing outside the image).
type ImageInfo struct {
	// Digest is the manifest digest ("sha256:…").
	Digest string
	// RootPath is where the image's root filesystem is mounted for the
	// container (absolute).
	RootPath string
	// Entrypoint, Cmd, Env ("KEY=value"), WorkingDir and StopSignal are
	// the image config's.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	StopSignal string
	// HasUser says the image sets a User, resolved to UID, GID and the
	// groups it is a member of (AdditionalGids).
	HasUser        bool
	UID, GID       uint32
	AdditionalGids []uint32
	// Healthcheck is the image config's (docker's HEALTHCHECK), nil
	// when it has none; see imageProbe.
	Healthcheck *ImageHealthcheck
}

// imageArgs are the process arguments by Kubernetes' rules: command
// replaces the Entrypoint and drops the Cmd, args replaces the Cmd.
func imageArgs(ms *ManifestSpec, img *ImageInfo) []string {
	switch {
	case len(ms.Command) > 0:
		return append(append([]string(nil), ms.Command...), ms.Args...)
	case len(ms.Args) > 0:
		return append(append([]string(nil), img.Entrypoint...), ms.Args...)
	default:
		return append(append([]string(nil), img.Entrypoint...), img.Cmd...)
	}
}

// provisionalImage stands in for an image not resolved yet, so that a
// manifest's oci fragment can be checked when it is read.
var provisionalImage = ImageInfo{RootPath: "/", Entrypoint: []string{"/image-entrypoint"}}

func buildSpec(m *Manifest, img *ImageInfo) *specs.Spec {
	ms := &m.Spec
	envMap := make(map[string]string, len(ms.Env)+1)
	var order []string
	if img != nil {
		for _, kv := range img.Env {
			k, v, _ := strings.Cut(kv, "=")
			if k == "" {
				continue
			}
			if _, dup := envMap[k]; !dup {
				order = append(order, k)
			}
			envMap[k] = v
		}
	}
	for k, v := range ms.Env {
		if _, dup := envMap[k]; !dup {
			order = append(order, k)
		}
		envMap[k] = v
	}
	if ms.Notify { // spec.notify (health.go)
		if _, dup := envMap["NOTIFY_SOCKET"]; !dup {
			order = append(order, "NOTIFY_SOCKET")
		}
		envMap["NOTIFY_SOCKET"] = NotifySocket(m.Metadata.Name)
	}
	env := make([]string, 0, len(order)+1)
	if _, ok := envMap["PATH"]; !ok {
		env = append(env, DefaultPath)
	}
	for _, k := range order {
		env = append(env, k+"="+envMap[k])
	}
	sort.Strings(env)

	user := specs.User{UID: ms.User.UID, GID: ms.User.GID}
	args := append(append([]string(nil), ms.Command...), ms.Args...)
	cwd := ms.WorkingDir
	root := &specs.Root{Path: ms.Root.Path, Readonly: ms.Root.Readonly}
	if img != nil {
		args = imageArgs(ms, img)
		if cwd == "" {
			cwd = img.WorkingDir
		}
		if cwd == "" {
			cwd = "/"
		}
		if ms.UserFromImage && img.HasUser {
			user = specs.User{UID: img.UID, GID: img.GID, AdditionalGids: append([]uint32(nil), img.AdditionalGids...)}
		}
		root.Path = img.RootPath
	}

	caps := effectiveCaps(ms.Capabilities)
	lc := &specs.LinuxCapabilities{Bounding: caps}
	if user.UID == 0 {
		lc.Effective = caps
		lc.Permitted = caps
	}

	mounts := defaultMounts()
	for _, um := range ms.Mounts {
		sm := specMount(um)
		replaced := false
		for i := range mounts {
			if mounts[i].Destination == sm.Destination {
				mounts[i], replaced = sm, true
				break
			}
		}
		if !replaced {
			mounts = append(mounts, sm)
		}
	}

	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	if ms.Network == NetworkPrivate {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if ms.Userns == UsernsAuto {
		// The mappings are the daemon's to choose (at create); the root
		// and the bind mounts are idmapped with them, so that nothing
		// is chowned.
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
		for i := range mounts {
			if mounts[i].Type == "bind" && !slices.Contains(mounts[i].Options, "idmap") && !slices.Contains(mounts[i].Options, "ridmap") {
				mounts[i].Options = append(slices.Clone(mounts[i].Options), "idmap")
			}
		}
	}

	// Checked when the manifest was read; an error here (a hand-built
	// manifest) still confines: a filter that kills at the first call.
	sc, err := specSeccomp(ms, caps)
	if err != nil {
		sc = &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess}
	}

	ann := runtimeAnnotations(m)
	if img != nil && img.Digest != "" {
		ann[AnnotationImage] = ms.Image
		ann[AnnotationImageDigest] = img.Digest
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            user,
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Capabilities:    lc,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: defaultNoFiles, Soft: defaultNoFiles}},
			NoNewPrivileges: true,
		},
		Root:        root,
		Hostname:    ms.Hostname,
		Mounts:      mounts,
		Annotations: ann,
		Linux: &specs.Linux{
			Resources:     buildResources(ms.Resources),
			Namespaces:    ns,
			MaskedPaths:   append([]string(nil), MaskedPaths...),
			ReadonlyPaths: append([]string(nil), ReadonlyPaths...),
			Seccomp:       sc,
		},
	}
}

// WithImage returns c, a container that runs an image, completed from its
// image: the image's config mapped by the image-spec's conversion rules
// (Entrypoint and Cmd against command and args as Kubernetes does, Env
// under the manifest's env, WorkingDir, the resolved User and StopSignal
// where the manifest sets none), the root at img.RootPath, the oci
// fragment merged over that, and the hashes with the digest in them. c
// is not changed.
func (c *Container) WithImage(img ImageInfo) (*Container, error) {
	if c.Manifest == nil || c.Manifest.Spec.Image == "" {
		return nil, fmt.Errorf("container %s does not run an image", c.Name)
	}
	if img.Digest == "" || !path.IsAbs(img.RootPath) {
		return nil, fmt.Errorf("container %s: image %s: no digest or root path", c.Name, c.Image)
	}
	m := c.Manifest
	args := imageArgs(&m.Spec, &img)
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("image %s sets no Entrypoint or Cmd: give spec.command", m.Spec.Image)
	}
	stop := m.Spec.Stop.Signal
	if stop == "" && img.StopSignal != "" {
		sig, err := ParseSignal(img.StopSignal)
		if err != nil {
			return nil, fmt.Errorf("image %s: StopSignal %q is not a signal (set spec.stop.signal)", m.Spec.Image, img.StopSignal)
		}
		stop = SignalName(sig)
	}
	if stop == "" {
		stop = DefaultStopSignal
	}
	s := buildSpec(m, &img)
	if len(m.Spec.OCI) > 0 {
		merged, oerr := applyOCI(s, m.Spec.OCI)
		if oerr != nil {
			return nil, fmt.Errorf("spec.oci with image %s: %s: %s", m.Spec.Image, strings.Join(oerr.path, "."), oerr.msg)
		}
		s = merged
	}
	hash, base := hashes(s, m, img.Digest)
	recursiveBinds(s, m)
	s.Annotations[AnnotationSpecHash] = hash
	out := *c
	out.Spec, out.Hash, out.BaseHash = s, hash, base
	out.ImageDigest, out.StopSignal = img.Digest, stop
	out.ImageWait, out.ImageFailed = "", false
	out.ImageHealth, out.ImageHealthNote = imageProbe(img.Healthcheck, c.Runtime)
	if out.ImageHealth != nil && m.Spec.Userns == UsernsAuto && !ExecIntoUserns {
		out.ImageHealth = nil
		out.ImageHealthNote = "HEALTHCHECK runs a command, which cannot be run in a container with userns: auto on " + runtime.GOARCH + " (exec into a user namespace is not supported there); give spec.health an http or tcp probe"
	}
	return &out, nil
}

func specMount(m Mount) specs.Mount {
	switch m.Type {
	case "bind":
		opts := []string{"rbind"}
		if m.Readonly {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: append(opts, m.Options...)}
	default: // tmpfs
		opts := []string{"nosuid", "nodev", "noexec", "mode=1777"}
		if m.Size > 0 {
			opts = append(opts, "size="+strconv.FormatInt(m.Size, 10))
		}
		if m.Readonly {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: append(opts, m.Options...)}
	}
}

// recursiveOptions are the mount-point options that have a recursive
// form ("r" + option: rro, rnosuid, ...), which applies to every mount of
// a bind's tree.
var recursiveOptions = map[string]bool{
	"ro": true, "rw": true, "nosuid": true, "suid": true, "nodev": true, "dev": true,
	"noexec": true, "exec": true, "noatime": true, "atime": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nostrictatime": true, "nodiratime": true, "diratime": true,
}

// recursiveBinds spells the options of the bind mounts that spec.mounts
// made in their recursive forms: a volume's readonly, nosuid, ... hold for
// every mount below its source as well, which the rbind takes along. (In
// the runtime spec, as runc and crun read it, a plain "ro" on an rbind
// makes the top mount read-only and leaves the mounts below writable.)
// A mount the oci fragment changed is left as the fragment wrote it. It
// runs after the hashes, which are over what the manifest says: a
// container created before this spelling keeps its hash.
func recursiveBinds(s *specs.Spec, m *Manifest) {
	for _, um := range m.Spec.Mounts {
		if um.Type != "bind" {
			continue
		}
		want := specMount(um)
		for i := range s.Mounts {
			sm := &s.Mounts[i]
			if sm.Destination != want.Destination || sm.Type != want.Type || sm.Source != want.Source || !slices.Equal(sm.Options, want.Options) {
				continue
			}
			opts := make([]string, len(sm.Options))
			for j, o := range sm.Options {
				if recursiveOptions[o] {
					o = "r" + o
				}
				opts[j] = o
			}
			sm.Options = opts
		}
	}
}

// buildResources maps the manifest's quantities as the kubelet does:
// memory → limit with swap = limit (no swap), cpu → quota/period and shares
// (MilliCPUToQuota, MilliCPUToShares), pids → pids.limit. Devices are denied
// by default, as containerd's default spec does; runc adds its standard set.
func buildResources(r Resources) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if r.Memory > 0 {
		limit, swap := r.Memory, r.Memory
		res.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if r.CPUMillis > 0 {
		shares := uint64(r.CPUMillis * sharesPerCPU / milliCPUToCPU)
		shares = min(max(shares, minShares), maxShares)
		quota := max(r.CPUMillis*cpuPeriod/milliCPUToCPU, minQuota)
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period}
	}
	if r.Pids > 0 {
		p := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &p}
	}
	return res
}

// hashes returns the spec hash and the base hash (linux.resources left
// out), both over the spec without the hash annotation, plus the manifest
// fields that matter but are not in the spec.
func hashes(s *specs.Spec, m *Manifest, digest string) (hash, base string) {
	c := *s
	c.Annotations = make(map[string]string, len(s.Annotations))
	for k, v := range s.Annotations {
		if k != AnnotationSpecHash {
			c.Annotations[k] = v
		}
	}
	extra := fmt.Sprintf("\x00restart=%s\x00stop=%s/%d", m.Spec.Restart, m.Spec.Stop.Signal, m.Spec.Stop.Timeout)
	// A generated linux.seccomp counts by what the manifest says, not
	// by its rules: those depend on the kernel and the machine, and a
	// kernel upgrade is no reason to recreate containers. (One set by
	// the oci fragment counts as written.)
	if !ociSetsSeccomp(m.Spec.OCI) && c.Linux != nil {
		l := *c.Linux
		l.Seccomp = nil
		c.Linux = &l
		// The default profile adds nothing, so that containers created
		// before spec.seccomp existed keep their hashes: an upgrade
		// recreates nothing (they come under the filter when next
		// created; README, Security).
		if sc := m.Spec.Seccomp; sc != "" && sc != SeccompDefault {
			extra += "\x00seccomp=" + sc
			if m.Spec.SeccompProfile != nil {
				extra += fmt.Sprintf("/%x", sha256.Sum256(m.Spec.SeccompProfile))
			}
		}
	}
	// The default runtime adds nothing, so that the hashes of containers
	// created before spec.runtime existed stay what they were.
	if m.Spec.Runtime != "" && m.Spec.Runtime != RuntimeNative {
		extra += "\x00runtime=" + m.Spec.Runtime
	}
	if digest != "" {
		extra += "\x00image=" + digest
	}
	sum := func(v *specs.Spec) string {
		b, err := json.Marshal(v)
		if err != nil {
			// A specs.Spec built from validated values always marshals.
			panic(fmt.Sprintf("desired: marshal spec: %v", err))
		}
		h := sha256.New()
		h.Write(b)
		h.Write([]byte(extra))
		return hex.EncodeToString(h.Sum(nil))
	}
	hash = sum(&c)
	if c.Linux != nil {
		l := *c.Linux
		l.Resources = nil
		c.Linux = &l
	}
	return hash, sum(&c)
}

// ociError is a problem with the merged oci fragment, located by its JSON
// path inside the fragment ("process.args", "linux.namespaces[2].type").
type ociError struct {
	path []string
	msg  string
}

// applyOCI merges the fragment (JSON) over spec as an RFC 7396 merge patch,
// decodes the result strictly and checks it.
func applyOCI(s *specs.Spec, fragment json.RawMessage) (*specs.Spec, *ociError) {
	base, err := json.Marshal(s)
	if err != nil {
		return nil, &ociError{msg: err.Error()}
	}
	var doc, patch any
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, &ociError{msg: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(fragment))
	dec.UseNumber()
	if err := dec.Decode(&patch); err != nil {
		return nil, &ociError{msg: err.Error()}
	}
	if p := unknownField(reflect.TypeOf(specs.Spec{}), patch, nil); p != nil {
		return nil, &ociError{path: p, msg: fmt.Sprintf("unknown field %q in the runtime spec", p[len(p)-1])}
	}
	merged := mergePatch(doc, patch)
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, &ociError{msg: err.Error()}
	}
	var res specs.Spec
	d := json.NewDecoder(bytes.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(&res); err != nil {
		var te *json.UnmarshalTypeError
		if ok := asTypeError(err, &te); ok {
			return nil, &ociError{path: strings.Split(te.Field, "."), msg: fmt.Sprintf("cannot use a JSON %s as %s", te.Value, te.Type)}
		}
		return nil, &ociError{msg: err.Error()}
	}
	if e := checkSpec(&res, s); e != nil {
		return nil, e
	}
	return &res, nil
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

// mergePatch implements RFC 7396: objects merge recursively, null deletes,
// anything else (arrays included) replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// unknownField returns the path of the first key in v that has no json
// field in t (keys visited in sorted order, so the answer is stable).
func unknownField(t reflect.Type, v any, at []string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil // a type error, found by the strict decode
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return append(append([]string(nil), at...), k)
			}
			if p := unknownField(ft, obj[k], append(at, k)); p != nil {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		for i, e := range arr {
			if p := unknownField(t.Elem(), e, append(at, "["+strconv.Itoa(i)+"]")); p != nil {
				return p
			}
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		for k, e := range obj {
			if p := unknownField(t.Elem(), e, append(at, k)); p != nil {
				return p
			}
		}
	}
	return nil
}

func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

func validNamespace(t specs.LinuxNamespaceType) bool {
	switch t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace,
		specs.IPCNamespace, specs.UTSNamespace, specs.UserNamespace,
		specs.CgroupNamespace, specs.TimeNamespace:
		return true
	}
	return false
}

// checkSpec is the basic validity check of a merged spec; orig is the
// generated one, whose reconciled-owned parts must survive the merge.
func checkSpec(s, orig *specs.Spec) *ociError {
	switch {
	case s.Root == nil || !path.IsAbs(s.Root.Path):
		return &ociError{path: []string{"root", "path"}, msg: "root.path must be an absolute path"}
	case s.Process == nil || len(s.Process.Args) == 0:
		return &ociError{path: []string{"process", "args"}, msg: "process.args must not be empty"}
	case !path.IsAbs(s.Process.Cwd):
		return &ociError{path: []string{"process", "cwd"}, msg: "process.cwd must be an absolute path"}
	case s.Linux == nil:
		return &ociError{path: []string{"linux"}, msg: "linux must not be removed"}
	case s.Linux.CgroupsPath != "":
		return &ociError{path: []string{"linux", "cgroupsPath"}, msg: "linux.cgroupsPath is managed by reconciled; leave it out"}
	case s.Annotations[AnnotationName] != orig.Annotations[AnnotationName]:
		return &ociError{path: []string{"annotations", AnnotationName}, msg: "annotation " + AnnotationName + " is reserved"}
	case s.Annotations[AnnotationRuntime] != orig.Annotations[AnnotationRuntime]:
		return &ociError{path: []string{"annotations", AnnotationRuntime}, msg: "annotation " + AnnotationRuntime + " is reserved (use spec.runtime)"}
	case s.Annotations[AnnotationInit] != orig.Annotations[AnnotationInit]:
		return &ociError{path: []string{"annotations", AnnotationInit}, msg: "annotation " + AnnotationInit + " is reserved (use spec.init: true)"}
	case s.Annotations[AnnotationUserns] != orig.Annotations[AnnotationUserns]:
		return &ociError{path: []string{"annotations", AnnotationUserns}, msg: "annotation " + AnnotationUserns + " is reserved (use spec.userns: auto)"}
	case orig.Annotations[AnnotationUserns] == UsernsAuto && (len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0):
		return &ociError{path: []string{"linux", "uidMappings"}, msg: "with userns: auto the daemon chooses linux.uidMappings and linux.gidMappings; leave them out"}
	case s.Annotations[AnnotationSpecHash] != "":
		return &ociError{path: []string{"annotations", AnnotationSpecHash}, msg: "annotation " + AnnotationSpecHash + " is reserved"}
	}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Destination) {
			return &ociError{path: []string{"mounts", "[" + strconv.Itoa(i) + "]", "destination"}, msg: "mount destination must be an absolute path"}
		}
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	hasUTS := false
	for i, n := range s.Linux.Namespaces {
		at := []string{"linux", "namespaces", "[" + strconv.Itoa(i) + "]", "type"}
		if !validNamespace(n.Type) {
			return &ociError{path: at, msg: fmt.Sprintf("%q is not a namespace type", n.Type)}
		}
		if seen[n.Type] {
			return &ociError{path: at, msg: fmt.Sprintf("namespace %q listed twice", n.Type)}
		}
		seen[n.Type] = true
		hasUTS = hasUTS || n.Type == specs.UTSNamespace
	}
	if s.Hostname != "" && !hasUTS {
		return &ociError{path: []string{"hostname"}, msg: "a hostname needs a uts namespace"}
	}
	for _, key := range slices.Sorted(maps.Keys(s.Linux.Sysctl)) {
		at := []string{"linux", "sysctl", key}
		ns, err := sys.SysctlNamespace(key)
		if err != nil {
			return &ociError{path: at, msg: err.Error()}
		}
		if !seen[specs.LinuxNamespaceType(ns)] {
			return &ociError{path: at, msg: fmt.Sprintf("sysctl %q needs a %s namespace of the container's own, or it would change the host's value (network: private gives one)", key, ns)}
		}
	}
	if c := s.Process.Capabilities; c != nil {
		for _, set := range []struct {
			name string
			list []string
		}{{"bounding", c.Bounding}, {"effective", c.Effective}, {"permitted", c.Permitted}, {"inheritable", c.Inheritable}, {"ambient", c.Ambient}} {
			for i, name := range set.list {
				if !knownCap(name) {
					return &ociError{path: []string{"process", "capabilities", set.name, "[" + strconv.Itoa(i) + "]"}, msg: fmt.Sprintf("%q is not a capability (write CAP_ names)", name)}
				}
			}
		}
	}
	return nil
}

// runtimeAnnotations are the generated spec's annotations: the name, and
// the runtime when it is not the native one (so that a native container's
// spec, and hash, are what they were before spec.runtime existed).
func runtimeAnnotations(m *Manifest) map[string]string {
	a := map[string]string{AnnotationName: m.Metadata.Name}
	if m.Spec.Runtime != "" && m.Spec.Runtime != RuntimeNative {
		a[AnnotationRuntime] = m.Spec.Runtime
	}
	if m.Spec.Init {
		a[AnnotationInit] = "true"
	}
	if m.Spec.Userns == UsernsAuto {
		a[AnnotationUserns] = UsernsAuto
		if m.Spec.Image == "" {
			// An image's root is an overlay of idmapped layers (the
			// daemon mounts it so): an overlay cannot be idmapped.
			a[AnnotationIDMapRoot] = "true"
		}
	}
	return a
}
