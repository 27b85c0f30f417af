package desired

import (
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// base is a valid manifest; tests append spec fields from line 8 on.
const base = `apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: web
spec:
  root: {path: /}
  command: [/bin/true]
`

func parseOne(t *testing.T, src string) *Container {
	t.Helper()
	cs, errs := Parse("web.yaml", []byte(src), ParseOptions{})
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", Errors(errs))
	}
	if len(cs) != 1 {
		t.Fatalf("got %d containers, want 1", len(cs))
	}
	return cs[0]
}

func TestParseIssueExample(t *testing.T) {
	src := `apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: web                      # a comment
  labels: {tier: edge}
spec:
  root:
    path: /
    readonly: true
  command: ["/bin/httpd", "-f", "-p", "8080"]
  env: {LOG_LEVEL: info}
  workingDir: /
  user: "1000:1000"
  network: private
  mounts:
    - {type: bind, source: /tmp, target: /srv, readonly: false}
    - {type: tmpfs, target: /tmp, size: 64Mi}
  resources: {memory: 256Mi, cpu: "0.5", pids: 512}
  capabilities: {add: [NET_BIND_SERVICE], drop: []}
  restart: always
  stop: {signal: SIGTERM, timeout: 10s}
  oci: {}
`
	c := parseOne(t, src)
	s := c.Spec
	if c.Name != "web" || c.Labels["tier"] != "edge" || c.Line != 4 || c.Doc != 0 {
		t.Errorf("name/labels/line/doc: %q %v %d %d", c.Name, c.Labels, c.Line, c.Doc)
	}
	if s.Root.Path != "/" || !s.Root.Readonly {
		t.Errorf("root: %+v", s.Root)
	}
	if !slices.Equal(s.Process.Args, []string{"/bin/httpd", "-f", "-p", "8080"}) {
		t.Errorf("args: %v", s.Process.Args)
	}
	if !slices.Equal(s.Process.Env, []string{"LOG_LEVEL=info", DefaultPath}) {
		t.Errorf("env: %v", s.Process.Env)
	}
	if s.Process.User.UID != 1000 || s.Process.User.GID != 1000 || !s.Process.NoNewPrivileges {
		t.Errorf("user/nnp: %+v %v", s.Process.User, s.Process.NoNewPrivileges)
	}
	// Non-root: the capability set in bounding only.
	caps := s.Process.Capabilities
	if len(caps.Bounding) != 14 || len(caps.Effective)+len(caps.Permitted)+len(caps.Inheritable)+len(caps.Ambient) != 0 {
		t.Errorf("caps for uid 1000: %+v", caps)
	}
	if s.Hostname != "web" {
		t.Errorf("hostname %q", s.Hostname)
	}
	var nsTypes []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		nsTypes = append(nsTypes, n.Type)
	}
	if !slices.Equal(nsTypes, []specs.LinuxNamespaceType{"pid", "ipc", "uts", "mount", "network"}) {
		t.Errorf("namespaces %v", nsTypes)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 256<<20 || *r.Memory.Swap != 256<<20 {
		t.Errorf("memory %d swap %d", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 {
		t.Errorf("cpu quota %d period %d shares %d", *r.CPU.Quota, *r.CPU.Period, *r.CPU.Shares)
	}
	if *r.Pids.Limit != 512 {
		t.Errorf("pids %d", *r.Pids.Limit)
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroupsPath %q", s.Linux.CgroupsPath)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	if !slices.Equal(dests, []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/srv", "/tmp"}) {
		t.Errorf("mounts %v", dests)
	}
	if s.Annotations[AnnotationName] != "web" || s.Annotations[AnnotationSpecHash] != c.Hash || c.Hash == "" || c.BaseHash == "" || c.BaseHash == c.Hash {
		t.Errorf("annotations %v hash %q base %q", s.Annotations, c.Hash, c.BaseHash)
	}
	if c.Runtime != RuntimeNative || c.Manifest.Spec.Runtime != RuntimeNative {
		t.Errorf("runtime %q, manifest %q, want native", c.Runtime, c.Manifest.Spec.Runtime)
	}
	if c.Restart != RestartAlways || c.StopSignal != "SIGTERM" || c.StopTimeout != 10*time.Second {
		t.Errorf("restart/stop %v %v %v", c.Restart, c.StopSignal, c.StopTimeout)
	}
}

func TestParseDefaults(t *testing.T) {
	c := parseOne(t, base)
	s := c.Spec
	caps := s.Process.Capabilities
	// Root: bounding, effective and permitted; never inheritable or ambient.
	if len(caps.Bounding) != 14 || !slices.Equal(caps.Bounding, caps.Effective) || !slices.Equal(caps.Bounding, caps.Permitted) || caps.Inheritable != nil || caps.Ambient != nil {
		t.Errorf("caps for root: %+v", caps)
	}
	if !s.Root.Readonly || s.Process.Cwd != "/" || s.Hostname != "web" || len(s.Linux.Namespaces) != 4 {
		t.Errorf("defaults: ro %v cwd %q host %q ns %v", s.Root.Readonly, s.Process.Cwd, s.Hostname, s.Linux.Namespaces)
	}
	if r := s.Linux.Resources; r.Memory != nil || r.CPU != nil || r.Pids != nil {
		t.Errorf("resources without limits: %+v", r)
	}
	if c.Runtime != RuntimeNative || c.Manifest.Spec.Runtime != RuntimeNative {
		t.Errorf("runtime %q, manifest %q, want native", c.Runtime, c.Manifest.Spec.Runtime)
	}
	if c.Restart != RestartAlways || c.StopSignal != "SIGTERM" || c.StopTimeout != 10*time.Second {
		t.Errorf("restart/stop %v %v %v", c.Restart, c.StopSignal, c.StopTimeout)
	}
	if !slices.Equal(s.Linux.MaskedPaths, MaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, ReadonlyPaths) {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestParseValidVariants(t *testing.T) {
	tests := []struct {
		name, extra string
		check       func(*Container) bool
	}{
		{"cpu millicores", "  resources: {cpu: 250m}", func(c *Container) bool {
			r := c.Spec.Linux.Resources.CPU
			return *r.Quota == 25000 && *r.Shares == 256
		}},
		{"tiny cpu hits kubelet minimums", "  resources: {cpu: 1m}", func(c *Container) bool {
			r := c.Spec.Linux.Resources.CPU
			return *r.Quota == 1000 && *r.Shares == 2
		}},
		{"cpu as a YAML number", "  resources: {cpu: 2}", func(c *Container) bool { return *c.Spec.Linux.Resources.CPU.Quota == 200000 }},
		{"decimal memory", "  resources: {memory: 1G}", func(c *Container) bool { return *c.Spec.Linux.Resources.Memory.Limit == 1e9 }},
		{"exponent memory", "  resources: {memory: 1e8}", func(c *Container) bool { return *c.Spec.Linux.Resources.Memory.Limit == 1e8 }},
		{"fractional binary", "  resources: {memory: 0.5Gi}", func(c *Container) bool { return *c.Spec.Linux.Resources.Memory.Limit == 512<<20 }},
		{"signal without SIG", "  stop: {signal: hup}", func(c *Container) bool { return c.StopSignal == "SIGHUP" }},
		{"signal number", "  stop: {signal: 2}", func(c *Container) bool { return c.StopSignal == "SIGINT" }},
		{"realtime signal", "  stop: {signal: SIGRTMIN+3}", func(c *Container) bool { return c.StopSignal == "SIGRTMIN+3" }},
		{"timeout in seconds", "  stop: {timeout: 30}", func(c *Container) bool { return c.StopTimeout == 30*time.Second }},
		{"cap with prefix, lowercase", "  capabilities: {add: [cap_sys_time]}", func(c *Container) bool {
			return slices.Contains(c.Spec.Process.Capabilities.Bounding, "CAP_SYS_TIME")
		}},
		{"drop all, add one", "  capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}", func(c *Container) bool {
			return slices.Equal(c.Spec.Process.Capabilities.Bounding, []string{"CAP_NET_BIND_SERVICE"})
		}},
		{"add all but one", "  capabilities: {add: [ALL], drop: [SYS_ADMIN]}", func(c *Container) bool {
			b := c.Spec.Process.Capabilities.Bounding
			return len(b) == len(allCaps)-1 && !slices.Contains(b, "CAP_SYS_ADMIN")
		}},
		{"uid alone means gid = uid", `  user: "65534"`, func(c *Container) bool { return c.Spec.Process.User.GID == 65534 }},
		{"uid as a YAML number", `  user: 1000`, func(c *Container) bool { return c.Spec.Process.User.UID == 1000 }},
		{"env numbers taken as written", "  env: {PORT: 8080, DEBUG: true}", func(c *Container) bool {
			return slices.Contains(c.Spec.Process.Env, "PORT=8080") && slices.Contains(c.Spec.Process.Env, "DEBUG=true")
		}},
		{"env PATH replaces the default", "  env: {PATH: /bin}", func(c *Container) bool { return slices.Equal(c.Spec.Process.Env, []string{"PATH=/bin"}) }},
		{"tmpfs over /dev/shm replaces the default", "  mounts: [{type: tmpfs, target: /dev/shm, size: 1Gi}]", func(c *Container) bool {
			n := 0
			for _, m := range c.Spec.Mounts {
				if m.Destination == "/dev/shm" {
					n++
					if !slices.Contains(m.Options, "size=1073741824") {
						return false
					}
				}
			}
			return n == 1
		}},
		{"readonly bind", "  mounts: [{type: bind, source: /etc, target: /mnt, readonly: true, options: [nosuid]}]", func(c *Container) bool {
			m := c.Spec.Mounts[len(c.Spec.Mounts)-1]
			return m.Type == "bind" && m.Source == "/etc" && slices.Equal(m.Options, []string{"rbind", "rro", "rnosuid"})
		}},
		{"root writable", "  hostname: box.example", func(c *Container) bool { return c.Spec.Hostname == "box.example" }},
		{"oci fragment merges", "  oci: {process: {rlimits: [{type: RLIMIT_NOFILE, soft: 64, hard: 64}], oomScoreAdj: 100}, annotations: {x: y}}", func(c *Container) bool {
			p := c.Spec.Process
			return p.Rlimits[0].Soft == 64 && *p.OOMScoreAdj == 100 && c.Spec.Annotations["x"] == "y" && c.Spec.Annotations[AnnotationName] == "web"
		}},
		{"runtime runc", "  runtime: runc", func(c *Container) bool {
			return c.Runtime == RuntimeRunc && c.Spec.Annotations[AnnotationRuntime] == "runc"
		}},
		{"runtime crun", "  runtime: crun", func(c *Container) bool { return c.Runtime == RuntimeCrun }},
		{"runtime native", "  runtime: native", func(c *Container) bool {
			_, ok := c.Spec.Annotations[AnnotationRuntime]
			return c.Runtime == RuntimeNative && !ok
		}},
		{"runtime configured name", "  runtime: youki_2", func(c *Container) bool { return c.Runtime == "youki_2" }},
		{"oci null removes", "  oci: {linux: {maskedPaths: null}}", func(c *Container) bool { return c.Spec.Linux.MaskedPaths == nil }},
		{"aliases", "  env: &e {A: b}\n  labels: null\n"[:len("  env: &e {A: b}\n")], func(c *Container) bool { return slices.Contains(c.Spec.Process.Env, "A=b") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseOne(t, base+tt.extra+"\n")
			if !tt.check(c) {
				t.Errorf("unexpected result for %q: %+v", tt.extra, c.Spec)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string // full document, or extra lines for base (from line 8)
		want string // an exact error line
	}{
		{"typo", "  comand: [x]", `web.yaml:8: spec.comand: unknown field "comand"; did you mean "command"? (valid: image, imagePullPolicy, root, command, args, env, workingDir, user, hostname, network, mounts, resources, capabilities, restart, stop, runtime, init, oci, seccomp, health, notify, after, userns)`},
		{"duplicate key", "  command: [y]", `web.yaml:8: spec.command: given twice (first on line 7)`},
		{"memory", "  resources: {memory: 12XB}", `web.yaml:8: spec.resources.memory: "12XB" is not a quantity (use e.g. 256Mi)`},
		{"memory too small", "  resources: {memory: 1Mi}", `web.yaml:8: spec.resources.memory: "1Mi" is below the minimum of 6Mi`},
		{"memory negative", "  resources: {memory: -1Gi}", `web.yaml:8: spec.resources.memory: "-1Gi" is not a quantity (use e.g. 256Mi)`},
		{"cpu", "  resources: {cpu: half}", `web.yaml:8: spec.resources.cpu: "half" is not a quantity (use e.g. 0.5 or 500m)`},
		{"cpu zero", "  resources: {cpu: 0}", `web.yaml:8: spec.resources.cpu: "0" must be at least 1m`},
		{"pids", "  resources: {pids: many}", `web.yaml:8: spec.resources.pids: "many" is not a positive integer (use e.g. 512)`},
		{"resources unknown", "  resources: {disk: 1Gi}", `web.yaml:8: spec.resources.disk: unknown field "disk" (valid: memory, cpu, pids)`},
		{"signal", "  stop: {signal: SIGFOO}", `web.yaml:8: spec.stop.signal: "SIGFOO" is not a signal (use a name such as SIGTERM or TERM, or a number)`},
		{"signal number", "  stop: {signal: 99}", `web.yaml:8: spec.stop.signal: "99" is not a signal (use a name such as SIGTERM or TERM, or a number)`},
		{"duration", "  stop: {timeout: 10x}", `web.yaml:8: spec.stop.timeout: "10x" is not a duration (use e.g. 10s or 1m30s)`},
		{"duration range", "  stop: {timeout: 2h}", `web.yaml:8: spec.stop.timeout: "2h" is out of range (0s to 1h)`},
		{"restart", "  restart: sometimes", `web.yaml:8: spec.restart: "sometimes" is not a restart policy (use always, on-failure or never)`},
		{"runtime path", "  runtime: /usr/bin/runc", `web.yaml:8: spec.runtime: "/usr/bin/runc" is not a runtime name (use native, runc, crun or a name given to the daemon with --runtime NAME=PATH: lower-case letters, digits, '-' and '_', at most 63)`},
		{"runtime upper case", "  runtime: RunC", `web.yaml:8: spec.runtime: "RunC" is not a runtime name (use native, runc, crun or a name given to the daemon with --runtime NAME=PATH: lower-case letters, digits, '-' and '_', at most 63)`},
		{"runtime empty", `  runtime: ""`, `web.yaml:8: spec.runtime: "" is not a runtime name (use native, runc, crun or a name given to the daemon with --runtime NAME=PATH: lower-case letters, digits, '-' and '_', at most 63)`},
		{"runtime mapping", "  runtime: {name: runc}", `web.yaml:8: spec.runtime: must be a string, not a mapping`},
		{"network", "  network: bridge", `web.yaml:8: spec.network: "bridge" is not a network mode (use host or private)`},
		{"user", `  user: "root"`, `web.yaml:8: spec.user: "root" has no numeric uid (use uid or uid:gid, numeric, e.g. "65534:65534")`},
		{"gid", `  user: "1:x"`, `web.yaml:8: spec.user: "1:x" has no numeric gid (use uid or uid:gid, numeric, e.g. "65534:65534")`},
		{"workingDir", "  workingDir: srv", `web.yaml:8: spec.workingDir: "srv" is not an absolute path (use e.g. /srv)`},
		{"hostname", "  hostname: a_b", `web.yaml:8: spec.hostname: "a_b" is not a valid hostname (letters, digits, '-' and '.', labels of at most 63, at most 64 in all)`},
		{"env name", `  env: {"A=B": x}`, `web.yaml:8: spec.env.A=B: "A=B" is not a valid variable name (no '=', not empty)`},
		{"env null", `  env: {A: }`, `web.yaml:8: spec.env.A: must be a string, not null`},
		{"capability", "  capabilities: {add: [FLY]}", `web.yaml:8: spec.capabilities.add[0]: "FLY" is not a capability (use e.g. NET_BIND_SERVICE; see capabilities(7))`},
		{"capability both", "  capabilities: {add: [KILL], drop: [CAP_KILL]}", `web.yaml:8: spec.capabilities: CAP_KILL is both added and dropped`},
		{"mount type", "  mounts: [{type: nfs, target: /x}]", `web.yaml:8: spec.mounts[0].type: "nfs" is not a mount type (use bind or tmpfs)`},
		{"mount target", "  mounts: [{type: tmpfs, target: x}]", `web.yaml:8: spec.mounts[0].target: "x" is not an absolute path (use e.g. /x)`},
		{"mount target missing", "  mounts: [{type: tmpfs}]", `web.yaml:8: spec.mounts[0].target: required: the absolute path inside the container`},
		{"mount over root", "  mounts: [{type: tmpfs, target: /}]", `web.yaml:8: spec.mounts[0].target: cannot mount over / (use spec.root)`},
		{"mount twice", "  mounts: [{type: tmpfs, target: /a}, {type: tmpfs, target: /a/}]", `web.yaml:8: spec.mounts[1].target: /a is already the target of spec.mounts[0]`},
		{"bind source", "  mounts: [{type: bind, target: /x}]", `web.yaml:8: spec.mounts[0].source: required for bind mounts: the absolute path on the host`},
		{"bind source missing", "  mounts: [{type: bind, source: /nonexistent/x, target: /x}]", `web.yaml:8: spec.mounts[0].source: /nonexistent/x does not exist on this host (no such file or directory)`},
		{"tmpfs source", "  mounts: [{type: tmpfs, source: /x, target: /x}]", `web.yaml:8: spec.mounts[0].source: not used by tmpfs mounts; remove it`},
		{"bind size", "  mounts: [{type: bind, source: /tmp, target: /x, size: 1Mi}]", `web.yaml:8: spec.mounts[0].size: only tmpfs mounts have a size`},
		{"tmpfs size", "  mounts: [{type: tmpfs, target: /x, size: lots}]", `web.yaml:8: spec.mounts[0].size: "lots" is not a positive quantity (use e.g. 64Mi)`},
		{"mount option", "  mounts: [{type: tmpfs, target: /x, options: [fast]}]", `web.yaml:8: spec.mounts[0].options[0]: "fast" is not a supported mount option (use ro, rw, nosuid, suid, nodev, dev, noexec, exec, noatime, atime, relatime, norelatime, strictatime, nostrictatime, nodiratime, diratime, private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable; for tmpfs also mode=N, uid=N, gid=N, nr_inodes=N)`},
		{"readonly type", "  mounts: [{type: tmpfs, target: /x, readonly: yes}]", `web.yaml:8: spec.mounts[0].readonly: must be true or false, not the string "yes"`},
		{"oci unknown", "  oci: {process: {argz: [x]}}", `web.yaml:8: spec.oci.process.argz: unknown field "argz" in the runtime spec`},
		{"oci type", "  oci:\n    process:\n      user: {uid: x}", `web.yaml:10: spec.oci.process.user.uid: cannot use a JSON string as uint32`},
		{"oci namespace", "  oci:\n    linux:\n      namespaces: [{type: pid}, {type: bogus}]", `web.yaml:10: spec.oci.linux.namespaces[1].type: "bogus" is not a namespace type`},
		{"oci args", "  oci: {process: {args: null}}", `web.yaml:8: spec.oci.process.args: process.args must not be empty`},
		{"oci cgroupsPath", "  oci: {linux: {cgroupsPath: /x}}", `web.yaml:8: spec.oci.linux.cgroupsPath: linux.cgroupsPath is managed by reconciled; leave it out`},
		{"oci runtime annotation", "  oci: {annotations: {dev.reconciled.runtime: runc}}", `web.yaml:8: spec.oci.annotations.dev.reconciled.runtime: annotation dev.reconciled.runtime is reserved (use spec.runtime)`},
		{"oci reserved annotation", "  oci: {annotations: {dev.reconciled.name: other}}", `web.yaml:8: spec.oci.annotations.dev.reconciled.name: annotation dev.reconciled.name is reserved`},
		{"oci not a mapping", "  oci: [1]", `web.yaml:8: spec.oci: must be a mapping (a runtime-spec fragment such as {process: {rlimits: [...]}}), not a list`},
		{"oci custom tag", "  oci: {x: !foo 1}", `web.yaml:8: spec.oci.x: unsupported tag !foo`},
		{"root missing", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  command: [x]\n", `web.yaml:5: spec.root: required unless spec.image is given (e.g. image: busybox, or root: {path: /, readonly: true})`},
		{"root path relative", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: rootfs}\n  command: [x]\n", `web.yaml:5: spec.root.path: "rootfs" is not an absolute path (use e.g. /rootfs)`},
		{"root path missing", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /nonexistent/rootfs}\n  command: [x]\n", `web.yaml:5: spec.root.path: /nonexistent/rootfs does not exist on this host (no such file or directory)`},
		{"root path a file", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /etc/hostname}\n  command: [x]\n", `web.yaml:5: spec.root.path: /etc/hostname is not a directory`},
		{"command missing", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /}\n", `web.yaml:5: spec.command: required unless spec.image is given (e.g. command: ["/bin/sh", "-c", "echo hi"])`},
		{"command empty", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /}\n  command: []\n", `web.yaml:6: spec.command: must not be empty (e.g. ["/bin/sh", "-c", "echo hi"])`},
		{"command not a list", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /}\n  command: /bin/true\n", `web.yaml:6: spec.command: must be a list, not the string "/bin/true"`},
		{"apiVersion", "apiVersion: v1\nkind: Container\nmetadata: {name: web}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:1: apiVersion: "v1" is not supported (use reconciled.dev/v1)`},
		{"apiVersion missing", "# apiVersion forgotten\nkind: Container\nmetadata: {name: web}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:2: apiVersion: required (use reconciled.dev/v1)`},
		{"kind", "apiVersion: reconciled.dev/v1\nkind: Pod\nmetadata: {name: web}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:2: kind: "Pod" is not supported (use Container)`},
		{"top-level unknown", base + "status: {}\n", `web.yaml:8: status: unknown field "status" (valid: apiVersion, kind, metadata, spec)`},
		{"name missing", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {labels: {a: b}}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:3: metadata.name: required: a lowercase DNS-1123 label such as web`},
		{"name case", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: Web}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:3: metadata.name: "Web" is not a lowercase DNS-1123 label (a-z, 0-9 and '-', starting and ending with a letter or digit, e.g. web-1)`},
		{"name length", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: " + strings.Repeat("a", 64) + "}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:3: metadata.name: "` + strings.Repeat("a", 64) + `" is 64 characters long (at most 63)`},
		{"label value", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web, labels: {tier: -edge}}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:3: metadata.labels.tier: "-edge" is not a valid label value (empty, or letters, digits, '-', '_', '.', at most 63 characters)`},
		{"label key", "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web, labels: {a/b/c: x}}\nspec: {root: {path: /}, command: [x]}\n", `web.yaml:3: metadata.labels.a/b/c: "a/b/c" is not a valid label key (name or prefix/name: letters, digits, '-', '_', '.', at most 63 characters)`},
		{"same name twice in a file", base + "---\n" + base, `web.yaml:12: metadata.name: "web" is defined twice in this file (first on line 4); names must be unique`},
		{"not a mapping", "[1, 2]\n", `web.yaml:1: must be a mapping (key: value), not a list`},
		{"bad YAML", base + "  env: {a: [}\n", `web.yaml:8: invalid YAML: did not find expected node content`},
		{"bad YAML on line 1", "[}\n", `web.yaml:1: invalid YAML: did not find expected node content`},
		{"scanner error", base + "  a: b: c\n", `web.yaml:8: invalid YAML: mapping values are not allowed in this context`},
		{"tabs", "apiVersion: reconciled.dev/v1\n\tkind: Container\n", `web.yaml:2: invalid YAML: found a tab character that violates indentation`},
		{"too large", base + "# " + strings.Repeat("x", MaxFileSize) + "\n", `web.yaml: file is 1048694 bytes, larger than the limit of 1048576 (1 MiB); split it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if !strings.Contains(src, "apiVersion") && !strings.HasPrefix(src, "[") {
				src = base + src + "\n"
			}
			cs, errs := Parse("web.yaml", []byte(src), ParseOptions{})
			if len(errs) == 0 {
				t.Fatalf("no error; got %d containers", len(cs))
			}
			if cs != nil {
				t.Errorf("containers returned with errors")
			}
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

func TestParseReportsEveryError(t *testing.T) {
	src := base + "  restart: sometimes\n  network: bridge\n  resources: {memory: 12XB}\n"
	_, errs := Parse("web.yaml", []byte(src), ParseOptions{})
	if len(errs) != 3 {
		t.Errorf("got %d errors, want 3: %v", len(errs), Errors(errs))
	}
}

func TestParseEmptyDocuments(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "---\n---\n", base + "---\n# nothing\n"} {
		cs, errs := Parse("web.yaml", []byte(src), ParseOptions{})
		if len(errs) > 0 {
			t.Errorf("%q: %v", src, Errors(errs))
		}
		if want := strings.Count(src, "apiVersion"); len(cs) != want {
			t.Errorf("%q: %d containers, want %d", src, len(cs), want)
		}
	}
}

func TestParseMultipleDocuments(t *testing.T) {
	src := base + "---\n" + strings.Replace(base, "name: web", "name: db", 1)
	cs, errs := Parse("web.yaml", []byte(src), ParseOptions{})
	if len(errs) > 0 {
		t.Fatal(Errors(errs))
	}
	if len(cs) != 2 || cs[0].Name != "web" || cs[1].Name != "db" || cs[1].Doc != 1 || cs[1].Line != 12 {
		t.Errorf("got %+v %+v", cs[0], cs[1])
	}
}

func TestParseSkipHostChecks(t *testing.T) {
	src := strings.Replace(base, "path: /}", "path: /nonexistent/rootfs}", 1)
	if _, errs := Parse("web.yaml", []byte(src), ParseOptions{SkipHostChecks: true}); len(errs) > 0 {
		t.Error(Errors(errs))
	}
}

func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString(base)
	b.WriteString("  oci:\n    annotations:\n      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("      a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	start := time.Now()
	_, errs := Parse("web.yaml", []byte(b.String()), ParseOptions{})
	if len(errs) == 0 {
		t.Fatal("an alias bomb was accepted")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}
