package desired

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"reconciled.dev/reconciled/internal/imageref"
)

// The keys each section accepts, in the order error messages list them:
// the manifest types' fields (see manifestKeys), so that a new field is
// declared once, in manifest.go.
var (
	topFields       = manifestKeys[Manifest]()
	metadataFields  = manifestKeys[Metadata]()
	specFields      = manifestKeys[ManifestSpec]()
	rootFields      = manifestKeys[Root]()
	mountFields     = manifestKeys[Mount]()
	resourcesFields = manifestKeys[Resources]()
	capsFields      = manifestKeys[Capabilities]()
	stopFields      = manifestKeys[Stop]()
)

// manifestKeys returns the keys a manifest section written as T accepts:
// the json name of each of T's fields, in declaration order, or its
// manifest tag where the key written differs from the one recorded
// (manifest:"cpu" on CPUMillis); "-" in either tag leaves the field out
// (SeccompProfile, UserFromImage: derived, never written).
func manifestKeys[T any]() []string {
	t := reflect.TypeFor[T]()
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if m, ok := f.Tag.Lookup("manifest"); ok {
			name = m
		}
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		keys = append(keys, name)
	}
	return keys
}

// manifest validates one document. It returns nil when the document is too
// broken to go on; otherwise errors are in p.el and the caller checks them.
func (p *parser) manifest(root *yaml.Node) *Manifest {
	top, ok := p.mapping(root, "", topFields...)
	if !ok {
		return nil
	}
	m := &Manifest{}
	if f, ok := top["apiVersion"]; !ok {
		p.errorf(root, "apiVersion", "required (use %s)", APIVersion)
	} else if v, ok := p.str(f.val, "apiVersion"); ok && v != APIVersion {
		p.errorf(f.val, "apiVersion", "%q is not supported (use %s)", v, APIVersion)
	} else {
		m.APIVersion = v
	}
	if f, ok := top["kind"]; !ok {
		p.errorf(root, "kind", "required (use %s)", Kind)
	} else if v, ok := p.str(f.val, "kind"); ok && v != Kind {
		p.errorf(f.val, "kind", "%q is not supported (use %s)", v, Kind)
	} else {
		m.Kind = v
	}
	if f, ok := top["metadata"]; !ok {
		p.errorf(root, "metadata", "required (with metadata.name)")
	} else {
		p.metadata(f.val, m)
	}
	if f, ok := top["spec"]; !ok {
		p.errorf(root, "spec", "required (with spec.root and spec.command)")
	} else {
		p.spec(f.val, m)
	}
	if p.budget < 0 {
		p.errorf(root, "", "document too large (more than %d nodes after expanding aliases)", maxNodes)
	}
	return m
}

func (p *parser) metadata(n *yaml.Node, m *Manifest) {
	md, ok := p.mapping(n, "metadata", metadataFields...)
	if !ok {
		return
	}
	if f, ok := md["name"]; !ok {
		p.errorf(n, "metadata.name", "required: a lowercase DNS-1123 label such as web")
	} else if v, ok := p.str(f.val, "metadata.name"); ok {
		p.nameLine = f.val.Line
		switch {
		case len(v) > 63:
			p.errorf(f.val, "metadata.name", "%q is %d characters long (at most 63)", v, len(v))
		case !isDNS1123Label(v):
			p.errorf(f.val, "metadata.name", "%q is not a lowercase DNS-1123 label (a-z, 0-9 and '-', starting and ending with a letter or digit, e.g. web-1)", v)
		default:
			m.Metadata.Name = v
		}
	}
	if f, ok := md["labels"]; ok {
		lm, ok := p.mapping(f.val, "metadata.labels")
		if !ok {
			return
		}
		m.Metadata.Labels = make(map[string]string, len(lm))
		for k, kv := range lm {
			at := "metadata.labels." + k
			v, ok := p.str(kv.val, at)
			if !ok {
				continue
			}
			if !validLabelKey(k) {
				p.errorf(kv.key, at, "%q is not a valid label key (name or prefix/name: letters, digits, '-', '_', '.', at most 63 characters)", k)
				continue
			}
			if v != "" && (len(v) > 63 || !isLabelName(v)) {
				p.errorf(kv.val, at, "%q is not a valid label value (empty, or letters, digits, '-', '_', '.', at most 63 characters)", v)
				continue
			}
			m.Metadata.Labels[k] = v
		}
	}
}

func validLabelKey(k string) bool {
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		name, prefix = prefix, ""
	} else if prefix == "" || len(prefix) > 253 || !validDNSSubdomain(prefix) {
		return false
	}
	return len(name) <= 63 && isLabelName(name)
}

func validDNSSubdomain(s string) bool {
	for _, l := range strings.Split(s, ".") {
		if len(l) > 63 || !isDNS1123Label(l) {
			return false
		}
	}
	return true
}

func (p *parser) spec(n *yaml.Node, m *Manifest) {
	sp, ok := p.mapping(n, "spec", specFields...)
	if !ok {
		return
	}
	s := &m.Spec

	// image
	if f, ok := sp["image"]; ok {
		if v, ok := p.str(f.val, "spec.image"); ok {
			ref, err := imageref.Normalize(v)
			if err != nil {
				p.errorf(p.deref(f.val), "spec.image", "%v (write e.g. busybox, busybox:1.36 or registry.example.com/team/app:1.4@sha256:…)", err)
			} else {
				s.Image = ref
			}
		}
	}
	image := sp["image"].key != nil
	if f, ok := sp["imagePullPolicy"]; ok {
		if !image {
			p.errorf(f.key, "spec.imagePullPolicy", "only used with spec.image; remove it or add an image")
		} else if v, ok := p.str(f.val, "spec.imagePullPolicy"); ok {
			switch PullPolicy(v) {
			case PullIfNotPresent, PullAlways, PullNever:
				s.ImagePullPolicy = PullPolicy(v)
			default:
				p.errorf(p.deref(f.val), "spec.imagePullPolicy", "%q is not a pull policy (use IfNotPresent, Always or Never)", v)
			}
		}
	} else if image {
		s.ImagePullPolicy = PullIfNotPresent
	}

	// root
	if f, ok := sp["root"]; !ok {
		if !image {
			p.errorf(n, "spec.root", "required unless spec.image is given (e.g. image: busybox, or root: {path: /, readonly: true})")
		}
		s.Root.Readonly = true
	} else if rf, ok := p.mapping(f.val, "spec.root", rootFields...); ok {
		s.Root.Readonly = true
		if pf, ok := rf["path"]; !ok {
			if !image {
				p.errorf(f.val, "spec.root.path", "required: the directory holding the root filesystem (\"/\" for the host's own)")
			}
		} else if image {
			p.errorf(pf.key, "spec.root.path", "spec.image and spec.root.path are exclusive: the image is the root filesystem (remove one; root.readonly may stay)")
		} else if v, ok := p.absPath(pf.val, "spec.root.path"); ok {
			s.Root.Path = v
			if !p.opts.SkipHostChecks {
				if fi, err := p.opts.Stat(v); err != nil {
					p.errorf(pf.val, "spec.root.path", "%s does not exist on this host (%v)", v, unwrapPathError(err))
				} else if !fi.IsDir() {
					p.errorf(pf.val, "spec.root.path", "%s is not a directory", v)
				} else if lfi, err := p.opts.Lstat(v); err == nil && lfi.Mode()&fs.ModeSymlink != 0 {
					// The root is mounted onto its own path, and
					// move_mount does not follow a symlink there: every
					// create would fail with EINVAL.
					real := "its target"
					if r, err := filepath.EvalSymlinks(v); err == nil {
						real = r
					}
					p.errorf(pf.val, "spec.root.path", "%s is a symlink to %s; the root is mounted onto its own path, which cannot be a symlink: write the real path (%s)", v, real, real)
				}
			}
		}
		if ro, ok := rf["readonly"]; ok {
			s.Root.Readonly, _ = p.boolean(ro.val, "spec.root.readonly")
		}
	}

	// command and args
	if f, ok := sp["command"]; !ok {
		if !image {
			p.errorf(n, "spec.command", `required unless spec.image is given (e.g. command: ["/bin/sh", "-c", "echo hi"])`)
		}
	} else if list, nodes, ok := p.strList(f.val, "spec.command"); ok {
		switch {
		case len(list) == 0 && !image:
			p.errorf(nodes0(f.val, nodes), "spec.command", `must not be empty (e.g. ["/bin/sh", "-c", "echo hi"])`)
		case len(list) == 0:
			p.errorf(nodes0(f.val, nodes), "spec.command", `must not be empty; leave it out to run the image's entrypoint`)
		case list[0] == "":
			p.errorf(nodes[0], "spec.command[0]", "the program must not be empty")
		default:
			s.Command = list
		}
	}
	if f, ok := sp["args"]; ok {
		if list, _, ok := p.strList(f.val, "spec.args"); ok && len(list) > 0 {
			s.Args = list
		}
	}

	// env
	if f, ok := sp["env"]; ok {
		if em, ok := p.mapping(f.val, "spec.env"); ok {
			s.Env = make(map[string]string, len(em))
			for k, kv := range em {
				at := "spec.env." + k
				v, ok := p.str(kv.val, at)
				if !ok {
					continue
				}
				if k == "" || strings.ContainsAny(k, "=\x00") {
					p.errorf(kv.key, at, "%q is not a valid variable name (no '=', not empty)", k)
					continue
				}
				s.Env[k] = v
			}
		}
	}

	if !image {
		s.WorkingDir = "/" // an image's WorkingDir applies (WithImage)
	}
	if f, ok := sp["workingDir"]; ok {
		if v, ok := p.absPath(f.val, "spec.workingDir"); ok {
			s.WorkingDir = v
		}
	}

	s.UserFromImage = image
	if f, ok := sp["user"]; ok {
		s.UserFromImage = false
		if v, ok := p.str(f.val, "spec.user"); ok {
			u, err := parseUser(v)
			if err != nil {
				p.errorf(p.deref(f.val), "spec.user", "%q %v (use uid or uid:gid, numeric, e.g. \"65534:65534\")", v, err)
			}
			s.User = u
		}
	}

	s.Hostname = m.Metadata.Name
	if f, ok := sp["hostname"]; ok {
		if v, ok := p.str(f.val, "spec.hostname"); ok {
			if validHostname(v) {
				s.Hostname = v
			} else {
				p.errorf(p.deref(f.val), "spec.hostname", "%q is not a valid hostname (letters, digits, '-' and '.', labels of at most 63, at most 64 in all)", v)
			}
		}
	}

	s.Network = NetworkHost
	if f, ok := sp["network"]; ok {
		if v, ok := p.str(f.val, "spec.network"); ok {
			switch Network(v) {
			case NetworkHost, NetworkPrivate:
				s.Network = Network(v)
			default:
				p.errorf(p.deref(f.val), "spec.network", "%q is not a network mode (use host or private)", v)
			}
		}
	}

	if f, ok := sp["mounts"]; ok {
		p.mounts(f.val, s)
	}
	if f, ok := sp["resources"]; ok {
		p.resources(f.val, s)
	}
	if f, ok := sp["capabilities"]; ok {
		p.capabilities(f.val, s)
	}

	s.Restart = RestartAlways
	if f, ok := sp["restart"]; ok {
		if v, ok := p.str(f.val, "spec.restart"); ok {
			switch RestartPolicy(v) {
			case RestartAlways, RestartOnFailure, RestartNever:
				s.Restart = RestartPolicy(v)
			default:
				p.errorf(p.deref(f.val), "spec.restart", "%q is not a restart policy (use always, on-failure or never)", v)
			}
		}
	}

	s.Stop = Stop{Signal: DefaultStopSignal, Timeout: DefaultStopTimeout}
	if image {
		s.Stop.Signal = "" // the image's StopSignal, else SIGTERM (WithImage)
	}
	if f, ok := sp["stop"]; ok {
		p.stop(f.val, s)
	}

	s.Runtime = RuntimeNative
	if f, ok := sp["runtime"]; ok {
		if v, ok := p.str(f.val, "spec.runtime"); ok {
			if ValidRuntimeName(v) {
				s.Runtime = v
			} else {
				p.errorf(p.deref(f.val), "spec.runtime", "%q is not a runtime name (use native, runc, crun or a name given to the daemon with --runtime NAME=PATH: lower-case letters, digits, '-' and '_', at most 63)", v)
			}
		}
	}

	if f, ok := sp["init"]; ok {
		p.initField(f, s)
	}
	if f, ok := sp["seccomp"]; ok {
		p.seccomp(f.val, s)
	}
	p.healthNotifyAfter(sp, m)
	if f, ok := sp["userns"]; ok {
		p.userns(f, s)
	}

	if f, ok := sp["oci"]; ok {
		p.ociLine = f.key.Line
		p.ociNode = p.deref(f.val)
		v, ok := p.toJSON(f.val, "spec.oci")
		if ok {
			if _, isObj := v.(map[string]any); !isObj {
				p.errorf(p.ociNode, "spec.oci", "must be a mapping (a runtime-spec fragment such as {process: {rlimits: [...]}}), not %s", describe(p.ociNode))
			} else if b, err := json.Marshal(v); err != nil {
				p.errorf(p.ociNode, "spec.oci", "cannot be expressed as JSON: %v", err)
			} else {
				s.OCI = b
			}
		}
	}
	if f, ok := sp["seccomp"]; ok && s.Seccomp != "" && ociSetsSeccomp(s.OCI) {
		p.errorf(f.key, "spec.seccomp", "spec.oci sets linux.seccomp too; keep one of them")
	} else if _, err := specSeccomp(s, effectiveCaps(s.Capabilities)); err != nil {
		p.errorf(n, "spec.seccomp", "%v", err)
	}
}

// seccomp reads spec.seccomp: default, unconfined or a profile file.
func (p *parser) seccomp(n *yaml.Node, s *ManifestSpec) {
	v, ok := p.str(n, "spec.seccomp")
	if !ok {
		return
	}
	switch v {
	case SeccompDefault:
		return // normalized to ""
	case SeccompUnconfined:
		s.Seccomp = v
		return
	}
	if !strings.HasPrefix(v, "/") {
		p.errorf(p.deref(n), "spec.seccomp", "%q is not default, unconfined or the absolute path of a seccomp profile file (Docker's JSON format or the runtime-spec's linux.seccomp)", v)
		return
	}
	s.Seccomp = path.Clean(v)
	if p.opts.SkipHostChecks {
		return
	}
	data, err := readSeccompProfile(s.Seccomp)
	if err != nil {
		p.errorf(p.deref(n), "spec.seccomp", "profile %s: %v (fix the file, or use default or unconfined)", s.Seccomp, err)
		return
	}
	s.SeccompProfile = data
}

func parseUser(v string) (User, error) {
	us, gs, hasGID := strings.Cut(v, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil || uid == math.MaxUint32 {
		return User{}, errors.New("has no numeric uid")
	}
	gid := uid
	if hasGID {
		g, err := strconv.ParseUint(gs, 10, 32)
		if err != nil || g == math.MaxUint32 {
			return User{}, errors.New("has no numeric gid")
		}
		gid = g
	}
	return User{UID: uint32(uid), GID: uint32(gid)}, nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > 63 || !isHostLabel(l) {
			return false
		}
	}
	return true
}

// mountOptions are the options accepted in spec.mounts[].options: flags,
// propagation, and for tmpfs mode/uid/gid/nr_inodes with a value.
var mountOptions = []string{
	"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
	"noatime", "atime", "relatime", "norelatime", "strictatime", "nostrictatime", "nodiratime", "diratime",
	"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable",
}

var tmpfsValueOptions = []string{"mode", "uid", "gid", "nr_inodes"}

func (p *parser) mounts(n *yaml.Node, s *ManifestSpec) {
	n = p.deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "spec.mounts", "must be a list of mounts, not %s", describe(n))
		return
	}
	targets := map[string]int{}
	for i, e := range n.Content {
		at := fmt.Sprintf("spec.mounts[%d]", i)
		mf, ok := p.mapping(e, at, mountFields...)
		if !ok {
			continue
		}
		e = p.deref(e)
		var m Mount
		good := true
		if f, ok := mf["type"]; !ok {
			p.errorf(e, at+".type", "required (bind or tmpfs)")
			good = false
		} else if v, ok := p.str(f.val, at+".type"); !ok {
			good = false
		} else if v != "bind" && v != "tmpfs" {
			p.errorf(p.deref(f.val), at+".type", "%q is not a mount type (use bind or tmpfs)", v)
			good = false
		} else {
			m.Type = v
		}
		if f, ok := mf["target"]; !ok {
			p.errorf(e, at+".target", "required: the absolute path inside the container")
			good = false
		} else if v, ok := p.absPath(f.val, at+".target"); !ok {
			good = false
		} else if v == "/" {
			p.errorf(p.deref(f.val), at+".target", "cannot mount over / (use spec.root)")
			good = false
		} else if first, dup := targets[v]; dup {
			p.errorf(p.deref(f.val), at+".target", "%s is already the target of spec.mounts[%d]", v, first)
			good = false
		} else {
			targets[v] = i
			m.Target = v
			if s.Root.Path == "/" && s.Root.Readonly && !p.opts.SkipHostChecks {
				// Nothing is ever created on the host's own root.
				if _, err := p.opts.Stat(v); err != nil {
					p.errorf(p.deref(f.val), at+".target", "%s does not exist on the host, and a read-only host root gets no mount points made in it (create it on the host, or run an image)", v)
					good = false
				}
			}
		}
		if f, ok := mf["source"]; ok {
			if m.Type == "tmpfs" {
				p.errorf(f.key, at+".source", "not used by tmpfs mounts; remove it")
				good = false
			} else if v, ok := p.absPath(f.val, at+".source"); !ok {
				good = false
			} else {
				m.Source = v
				if !p.opts.SkipHostChecks {
					if _, err := p.opts.Stat(v); err != nil {
						p.errorf(p.deref(f.val), at+".source", "%s does not exist on this host (%v)", v, unwrapPathError(err))
						good = false
					}
				}
			}
		} else if m.Type == "bind" {
			p.errorf(e, at+".source", "required for bind mounts: the absolute path on the host")
			good = false
		}
		if f, ok := mf["readonly"]; ok {
			m.Readonly, ok = p.boolean(f.val, at+".readonly")
			good = good && ok
		}
		if f, ok := mf["size"]; ok {
			if m.Type != "tmpfs" {
				p.errorf(f.key, at+".size", "only tmpfs mounts have a size")
				good = false
			} else if v, ok := p.str(f.val, at+".size"); ok {
				b, err := parseBytes(v)
				switch {
				case errors.Is(err, errTooLarge) || err == nil && (b > maxBytes || b > 0 && b < pageSize):
					p.errorf(p.deref(f.val), at+".size", "%q is out of range (%s to %s; the kernel sizes tmpfs in pages of 4Ki)", v, FormatBytes(pageSize), maxBytesText)
					good = false
				case err != nil || b <= 0:
					p.errorf(p.deref(f.val), at+".size", "%q is not a positive quantity (use e.g. 64Mi)", v)
					good = false
				default:
					m.Size = b
				}
			}
		}
		if f, ok := mf["options"]; ok {
			opts, nodes, ok := p.strList(f.val, at+".options")
			good = good && ok
			for j, o := range opts {
				k, _, hasValue := strings.Cut(o, "=")
				valid := (!hasValue && contains(mountOptions, o)) || (hasValue && m.Type == "tmpfs" && contains(tmpfsValueOptions, k))
				if !valid {
					p.errorf(nodes[j], fmt.Sprintf("%s.options[%d]", at, j), "%q is not a supported mount option (use %s; for tmpfs also %s=N)", o, strings.Join(mountOptions, ", "), strings.Join(tmpfsValueOptions, "=N, "))
					good = false
				}
			}
			m.Options = opts
		}
		if good {
			s.Mounts = append(s.Mounts, m)
		}
	}
}

func (p *parser) resources(n *yaml.Node, s *ManifestSpec) {
	rf, ok := p.mapping(n, "spec.resources", resourcesFields...)
	if !ok {
		return
	}
	if f, ok := rf["memory"]; ok {
		if v, ok := p.str(f.val, "spec.resources.memory"); ok {
			b, err := parseBytes(v)
			switch {
			case errors.Is(err, errTooLarge) || err == nil && b > maxBytes:
				p.errorf(p.deref(f.val), "spec.resources.memory", "%q is out of range (%s to %s)", v, FormatBytes(minMemory), maxBytesText)
			case err != nil:
				p.errorf(p.deref(f.val), "spec.resources.memory", "%q is not a quantity (use e.g. 256Mi)", v)
			case b < minMemory:
				p.errorf(p.deref(f.val), "spec.resources.memory", "%q is below the minimum of 6Mi", v)
			default:
				s.Resources.Memory = b
			}
		}
	}
	if f, ok := rf["cpu"]; ok {
		if v, ok := p.str(f.val, "spec.resources.cpu"); ok {
			mc, err := parseMillis(v)
			switch {
			case errors.Is(err, errTooLarge) || err == nil && mc > maxCPUMillis:
				p.errorf(p.deref(f.val), "spec.resources.cpu", "%q is out of range (1m to %d, the most CPUs a Linux kernel can be built for)", v, maxCPUMillis/1000)
			case err != nil:
				p.errorf(p.deref(f.val), "spec.resources.cpu", "%q is not a quantity (use e.g. 0.5 or 500m)", v)
			case mc <= 0:
				p.errorf(p.deref(f.val), "spec.resources.cpu", "%q must be at least 1m", v)
			default:
				s.Resources.CPUMillis = mc
			}
		}
	}
	if f, ok := rf["pids"]; ok {
		if v, ok := p.str(f.val, "spec.resources.pids"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") || err == nil && n > maxPids {
				p.errorf(p.deref(f.val), "spec.resources.pids", "%q is out of range (1 to %d, the kernel's PID_MAX_LIMIT)", v, maxPids)
			} else if err != nil || n < 1 {
				p.errorf(p.deref(f.val), "spec.resources.pids", "%q is not a positive integer (use e.g. 512)", v)
			} else {
				s.Resources.Pids = n
			}
		}
	}
}

func (p *parser) capabilities(n *yaml.Node, s *ManifestSpec) {
	cf, ok := p.mapping(n, "spec.capabilities", capsFields...)
	if !ok {
		return
	}
	read := func(key string) []string {
		f, ok := cf[key]
		if !ok {
			return nil
		}
		at := "spec.capabilities." + key
		list, nodes, ok := p.strList(f.val, at)
		if !ok {
			return nil
		}
		set := map[string]bool{}
		for i, c := range list {
			norm, err := normalizeCap(c)
			if err != nil {
				p.errorf(nodes[i], fmt.Sprintf("%s[%d]", at, i), "%v", err)
				continue
			}
			set[norm] = true
		}
		out := make([]string, 0, len(set))
		for c := range set {
			out = append(out, c)
		}
		sort.Strings(out)
		if len(out) == 0 {
			return nil
		}
		return out
	}
	s.Capabilities.Add = read("add")
	s.Capabilities.Drop = read("drop")
	for _, c := range s.Capabilities.Add {
		if contains(s.Capabilities.Drop, c) {
			p.errorf(cf["add"].val, "spec.capabilities", "%s is both added and dropped", c)
		}
	}
}

func (p *parser) stop(n *yaml.Node, s *ManifestSpec) {
	sf, ok := p.mapping(n, "spec.stop", stopFields...)
	if !ok {
		return
	}
	if f, ok := sf["signal"]; ok {
		if v, ok := p.str(f.val, "spec.stop.signal"); ok {
			sig, err := ParseSignal(v)
			if err != nil {
				p.errorf(p.deref(f.val), "spec.stop.signal", "%q is not a signal (use a name such as SIGTERM or TERM, or a number)", v)
			} else {
				s.Stop.Signal = SignalName(sig)
			}
		}
	}
	if f, ok := sf["timeout"]; ok {
		if d, ok := p.durationIn(f.val, "spec.stop.timeout", 0, time.Hour, "10s or 1m30s", "0s to 1h"); ok {
			s.Stop.Timeout = d
		}
	}
}
