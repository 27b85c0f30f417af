package executor

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/specwarm"
	"reconciled.dev/reconciled/internal/testutil"
)

// runcSpecJSON is what `runc spec` writes (runc 1.1, indented with tabs),
// with a terminal and the default mounts, namespaces and paths.
const runcSpecJSON = `{
	"ociVersion": "1.0.2-dev",
	"process": {
		"terminal": true,
		"user": {
			"uid": 0,
			"gid": 0
		},
		"args": [
			"sh"
		],
		"env": [
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm"
		],
		"cwd": "/",
		"capabilities": {
			"bounding": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"effective": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"permitted": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			],
			"ambient": [
				"CAP_AUDIT_WRITE",
				"CAP_KILL",
				"CAP_NET_BIND_SERVICE"
			]
		},
		"rlimits": [
			{
				"type": "RLIMIT_NOFILE",
				"hard": 1024,
				"soft": 1024
			}
		],
		"noNewPrivileges": true
	},
	"root": {
		"path": "rootfs",
		"readonly": true
	},
	"hostname": "runc",
	"mounts": [
		{
			"destination": "/proc",
			"type": "proc",
			"source": "proc"
		},
		{
			"destination": "/dev",
			"type": "tmpfs",
			"source": "tmpfs",
			"options": [
				"nosuid",
				"strictatime",
				"mode=755",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/pts",
			"type": "devpts",
			"source": "devpts",
			"options": [
				"nosuid",
				"noexec",
				"newinstance",
				"ptmxmode=0666",
				"mode=0620",
				"gid=5"
			]
		},
		{
			"destination": "/dev/shm",
			"type": "tmpfs",
			"source": "shm",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"mode=1777",
				"size=65536k"
			]
		},
		{
			"destination": "/dev/mqueue",
			"type": "mqueue",
			"source": "mqueue",
			"options": [
				"nosuid",
				"noexec",
				"nodev"
			]
		},
		{
			"destination": "/sys",
			"type": "sysfs",
			"source": "sysfs",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"ro"
			]
		},
		{
			"destination": "/sys/fs/cgroup",
			"type": "cgroup",
			"source": "cgroup",
			"options": [
				"nosuid",
				"noexec",
				"nodev",
				"relatime",
				"ro"
			]
		}
	],
	"linux": {
		"resources": {
			"devices": [
				{
					"allow": false,
					"access": "rwm"
				}
			]
		},
		"namespaces": [
			{
				"type": "pid"
			},
			{
				"type": "network"
			},
			{
				"type": "ipc"
			},
			{
				"type": "uts"
			},
			{
				"type": "mount"
			},
			{
				"type": "cgroup"
			}
		],
		"maskedPaths": [
			"/proc/acpi",
			"/proc/asound",
			"/proc/kcore",
			"/proc/keys",
			"/proc/latency_stats",
			"/proc/timer_list",
			"/proc/timer_stats",
			"/proc/sched_debug",
			"/sys/firmware",
			"/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus",
			"/proc/fs",
			"/proc/irq",
			"/proc/sys",
			"/proc/sysrq-trigger"
		]
	}
}
`

// engineSpecJSON is the shape of a spec an engine (podman, containerd)
// writes: seccomp, hooks, resources, devices, a user namespace,
// annotations.
const engineSpecJSON = `{"ociVersion":"1.2.0","process":{"user":{"uid":1000,"gid":1000,"umask":18,"additionalGids":[10,1000]},
"args":["/usr/bin/app","--flag=1","caf\u00e9 \"quoted\"\n"],"env":["PATH=/usr/bin","LANG=C.UTF-8","GREETING=h\u00e9llo \u2603 \ud83d\ude00 z\u00fcrich"],
"cwd":"/srv","consoleSize":{"height":24,"width":80},"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_CHOWN"],
"inheritable":[],"permitted":["CAP_CHOWN"],"ambient":[]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":1048576,"soft":1024},
{"type":"RLIMIT_CORE","hard":18446744073709551615,"soft":0}],"noNewPrivileges":true,"oomScoreAdj":-999,"apparmorProfile":"","selinuxLabel":""},
"root":{"path":"/var/lib/x/rootfs","readonly":false},"hostname":"app-1","domainname":"example.org",
"mounts":[{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]},
{"destination":"/data","type":"bind","source":"/srv/data","options":["rbind","rw"],"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}],
"hooks":{"prestart":[{"path":"/usr/bin/netns-hook","args":["netns-hook","up"],"env":["A=1"],"timeout":10}],
"createRuntime":[{"path":"/bin/true"}],"createContainer":[{"path":"/bin/true","timeout":-1}],"startContainer":[],
"poststart":[{"path":"/bin/true","args":["true"]}],"poststop":[{"path":"/usr/bin/netns-hook","args":["netns-hook","down"]}]},
"annotations":{"io.podman.annotations.autoremove":"TRUE","org.opencontainers.image.title":"app","":"empty key","dup":"first","dup":"second"},
"linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
"sysctl":{"net.ipv4.ip_unprivileged_port_start":"0","net.ipv4.ping_group_range":"0 0"},
"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},{"allow":true,"type":"c","major":136,"minor":-1,"access":"rwm"}],
"memory":{"limit":536870912,"reservation":268435456,"swap":-1,"kernel":0,"kernelTCP":0,"swappiness":60,"disableOOMKiller":false,"useHierarchy":true,"checkBeforeUpdate":true},
"cpu":{"shares":1024,"quota":50000,"burst":0,"period":100000,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"0-1","mems":"0","idle":0},
"pids":{"limit":2048},"unified":{"memory.high":"400M","io.weight":"default 100"}},
"cgroupsPath":"machine.slice:libpod:app","namespaces":[{"type":"pid"},{"type":"network","path":"/run/netns/app"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"user"},{"type":"cgroup"}],
"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":438,"uid":0,"gid":0},{"path":"/dev/null","type":"c","major":1,"minor":3}],
"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
"flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],"listenerPath":"/run/seccomp.sock","listenerMetadata":"meta",
"syscalls":[{"names":["accept","accept4","access","read","write"],"action":"SCMP_ACT_ALLOW"},
{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
{"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
{"names":["ptrace"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]},
"rootfsPropagation":"rslave","maskedPaths":["/proc/kcore","/sys/firmware"],"readonlyPaths":["/proc/sys"],"mountLabel":""}}`

// testSpec is the spec the tests' bundles start from.
func testSpec() *specs.Spec { return testutil.DefaultSpec("sh", "-c", "echo out; exit 3") }

func ptr[T any](v T) *T { return &v }

// fullSpec sets every field decodeSpecFast knows, each to a value that is
// not its zero in the first element of each slice (TestFullSpecIsFull
// checks that); later elements leave fields out.
func fullSpec() *specs.Spec {
	hook := func(p string) []specs.Hook {
		return []specs.Hook{{Path: p, Args: []string{p, "x"}, Env: []string{"A=" + p}, Timeout: ptr(-3)}, {Path: p + "2"}}
	}
	ids := func(base uint32) []specs.LinuxIDMapping {
		return []specs.LinuxIDMapping{{ContainerID: 1, HostID: base, Size: 65536}}
	}
	return &specs.Spec{
		Version: "1.3.0",
		Process: &specs.Process{
			Terminal:    true,
			ConsoleSize: &specs.Box{Height: 24, Width: 1<<64 - 1},
			User: specs.User{UID: 1<<32 - 1, GID: 7, Umask: ptr(uint32(0o22)),
				AdditionalGids: []uint32{0, 4294967295}, Username: "\u00e9\U0001F600\x00\x1f\"\\</>&\u2028"},
			Args:            []string{"a", "", "\t"},
			CommandLine:     "cmd /c",
			Env:             []string{"A=1"},
			Cwd:             "/w",
			Capabilities:    &specs.LinuxCapabilities{Bounding: []string{"b"}, Effective: []string{"e"}, Inheritable: []string{"i"}, Permitted: []string{"p"}, Ambient: []string{"a"}},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 1<<64 - 1, Soft: 1}},
			NoNewPrivileges: true,
			ApparmorProfile: "ap",
			OOMScoreAdj:     ptr(-1000),
			SelinuxLabel:    "sl",
		},
		Root:        &specs.Root{Path: "r", Readonly: true},
		Hostname:    "h",
		Domainname:  "d",
		Mounts:      []specs.Mount{{Destination: "/m", Type: "bind", Source: "/s", Options: []string{"rbind"}, UIDMappings: ids(2), GIDMappings: ids(3)}},
		Hooks:       &specs.Hooks{Prestart: hook("/p"), CreateRuntime: hook("/cr"), CreateContainer: hook("/cc"), StartContainer: hook("/sc"), Poststart: hook("/ps"), Poststop: hook("/po")},
		Annotations: map[string]string{"a": "b", "": "", "\u00e9": "\n"},
		Linux: &specs.Linux{
			UIDMappings: ids(100000),
			GIDMappings: ids(200000),
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: ptr(int64(-1)), Minor: ptr(int64(1<<63 - 1)), Access: "rwm"}},
				Memory: &specs.LinuxMemory{Limit: ptr(int64(-1 << 63)), Reservation: ptr(int64(2)), Swap: ptr(int64(3)), Kernel: ptr(int64(4)),
					KernelTCP: ptr(int64(5)), Swappiness: ptr(uint64(1<<64 - 1)), DisableOOMKiller: ptr(false), UseHierarchy: ptr(true), CheckBeforeUpdate: ptr(true)},
				CPU: &specs.LinuxCPU{Shares: ptr(uint64(1)), Quota: ptr(int64(-1)), Burst: ptr(uint64(2)), Period: ptr(uint64(3)),
					RealtimeRuntime: ptr(int64(4)), RealtimePeriod: ptr(uint64(5)), Cpus: "0-3", Mems: "0", Idle: ptr(int64(1))},
				Pids:    &specs.LinuxPids{Limit: ptr(int64(0))},
				Unified: map[string]string{"memory.high": "max"},
			},
			CgroupsPath: "/c",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/n"}, {Type: specs.PIDNamespace}},
			Devices: []specs.LinuxDevice{{Path: "/dev/x", Type: "c", Major: -1, Minor: 1<<63 - 1,
				FileMode: ptr(os.FileMode(0o666) | os.ModeDevice), UID: ptr(uint32(0)), GID: ptr(uint32(1<<32 - 1))}},
			Seccomp: &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno, DefaultErrnoRet: ptr(uint(1<<64 - 1)),
				Architectures: []specs.Arch{specs.ArchX86_64}, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
				ListenerPath: "/l", ListenerMetadata: "m",
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, ErrnoRet: ptr(uint(0)),
					Args: []specs.LinuxSeccompArg{{Index: 5, Value: 1<<64 - 1, ValueTwo: 7, Op: specs.OpMaskedEqual}}}},
			},
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			MountLabel:        "ml",
		},
	}
}

// notFast are the fields decodeSpecFast leaves to encoding/json.
var notFast = map[string]bool{
	"Spec.Solaris": true, "Spec.Windows": true, "Spec.VM": true, "Spec.ZOS": true, "Spec.FreeBSD": true,
	"Process.Scheduler": true, "Process.IOPriority": true, "Process.ExecCPUAffinity": true,
	"Linux.NetDevices": true, "Linux.IntelRdt": true, "Linux.MemoryPolicy": true, "Linux.Personality": true, "Linux.TimeOffsets": true,
	"LinuxResources.BlockIO": true, "LinuxResources.HugepageLimits": true, "LinuxResources.Network": true, "LinuxResources.Rdma": true,
}

// TestFullSpecIsFull: fullSpec leaves no field of the fast subset at its
// zero value, so that its round trip covers every one (a field that
// specs-go adds later shows up here too, to be added or listed in
// notFast).
func TestFullSpecIsFull(t *testing.T) {
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice:
			if v.Len() > 0 {
				walk(v.Index(0), path+"[0]")
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				name := v.Type().Name() + "." + f.Name
				if notFast[name] {
					continue
				}
				fv := v.Field(i)
				if fv.IsZero() {
					t.Errorf("fullSpec leaves %s (%s) at its zero value", path+"."+f.Name, name)
				}
				walk(fv, path+"."+f.Name)
			}
		}
	}
	walk(reflect.ValueOf(fullSpec()), "spec")
}

// sameAsEncodingJSON checks that decodeSpec decodes data as json.Unmarshal
// does, and says whether it took the fast path.
func sameAsEncodingJSON(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	var want specs.Spec
	wantErr := json.Unmarshal(data, &want)
	fastSpec, fast := decodeSpecFast(data)
	if fast {
		if wantErr != nil {
			t.Fatalf("the fast path accepts what encoding/json refuses (%v):\n%q", wantErr, data)
		}
		if !reflect.DeepEqual(*fastSpec, want) {
			t.Fatalf("the fast path decodes\n%q\nas\n%#v\nencoding/json as\n%#v", data, *fastSpec, want)
		}
	}
	got, err := decodeSpec(data)
	switch {
	case (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()):
		t.Fatalf("decodeSpec(%q): error %v, encoding/json's %v", data, err, wantErr)
	case err == nil && !reflect.DeepEqual(*got, want):
		t.Fatalf("decodeSpec(%q) =\n%#v\nencoding/json:\n%#v", data, *got, want)
	}
	return fast
}

func mustMarshal(t testing.TB, v any, indent bool) string {
	t.Helper()
	var b []byte
	var err error
	if indent {
		b, err = json.MarshalIndent(v, "", "\t")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type specDoc struct {
	name string
	json string
	// fast: the fast path must decode it (a typical spec, or one that
	// only uses its fields); otherwise either path may.
	fast bool
}

// specDocs are the documents every test (and the fuzzer's seed corpus)
// decodes both ways.
func specDocs(t testing.TB) []specDoc {
	docs := []specDoc{
		{"runc spec", runcSpecJSON, true},
		{"engine", engineSpecJSON, true},
		{"specwarm", specwarm.JSON, true},
		{"test defaultSpec", mustMarshal(t, testSpec(), false), true},
		{"test defaultSpec indented", mustMarshal(t, testSpec(), true), true},
		{"full", mustMarshal(t, fullSpec(), false), true},
		{"full indented", mustMarshal(t, fullSpec(), true), true},
		{"empty object", `{}`, true},
		{"whitespace", " \t\r\n{ \t\r\n\"ociVersion\" \t\r\n: \t\r\n\"1\" \t\r\n} \t\r\n", true},
		{"nulls", `{"ociVersion":null,"process":null,"root":null,"hostname":null,"domainname":null,"mounts":null,"hooks":null,"annotations":null,"linux":null}`, true},
		{"nested nulls", `{"process":{"terminal":null,"consoleSize":null,"user":null,"args":null,"cwd":null,"capabilities":{"bounding":null},"rlimits":[{"type":null,"hard":null}],"oomScoreAdj":null},
			"linux":{"resources":{"memory":{"limit":null,"disableOOMKiller":null},"cpu":{"shares":null,"cpus":null},"pids":{"limit":null},"devices":[{"major":null,"allow":null}],"unified":null},
			"seccomp":{"defaultErrnoRet":null,"syscalls":[{"names":null,"errnoRet":null,"args":[{"index":null,"value":null}]}]},"devices":[{"fileMode":null,"uid":null,"major":null}],"sysctl":null,"namespaces":null},
			"hooks":{"poststop":[{"timeout":null,"args":null}]}}`, true},
		{"empty arrays and objects", `{"process":{"consoleSize":{},"user":{},"args":[],"env":[],"capabilities":{},"rlimits":[]},"root":{},"mounts":[],"hooks":{},"annotations":{},
			"linux":{"uidMappings":[],"sysctl":{},"resources":{"memory":{},"cpu":{},"pids":{},"devices":[],"unified":{}},"namespaces":[],"devices":[],"seccomp":{"syscalls":[]},"maskedPaths":[]}}`, true},
		{"escapes", `{"hostname":"\"\\\/\b\f\n\r\t\u0000\u001f\u0041\u00e9\u20AC\uFFFD\uD83D\uDE00\ud800\udc00\udbff\udfff","process":{"args":["\u2028","a\u0000b"]},"annotations":{"k\u00e9\n":"v\\"}}`, true},
		{"raw unicode", "{\"hostname\":\"h\u00e9llo \u2603 \U0001F600 \uFFFD \x7f\",\"annotations\":{\"\u00e9\":\"\U0001F600\"}}", true},
		{"big numbers", `{"process":{"user":{"uid":4294967295,"gid":0,"umask":4294967295,"additionalGids":[4294967295]},"consoleSize":{"height":18446744073709551615,"width":0},"oomScoreAdj":-9223372036854775808,
			"rlimits":[{"hard":18446744073709551615,"soft":0}]},"linux":{"resources":{"memory":{"limit":9223372036854775807,"swap":-9223372036854775808}},"devices":[{"major":-0,"minor":-9223372036854775808,"fileMode":4294967295}]}}`, true},
		{"negative zero int", `{"process":{"oomScoreAdj":-0}}`, true},
		{"duplicate map key", `{"annotations":{"a":"1","a":"2"}}`, true},
		{"map key with escapes", `{"annotations":{"\u0061":"1","a":"2"}}`, true},

		// Left to encoding/json: errors, and valid documents with what
		// the fast path does not decode.
		{"empty", ``, false},
		{"only whitespace", " \n", false},
		{"null", `null`, false},
		{"array", `[]`, false},
		{"string", `"x"`, false},
		{"number", `1`, false},
		{"truncated", runcSpecJSON[:len(runcSpecJSON)/2], false},
		{"trailing garbage", `{} x`, false},
		{"two values", `{}{}`, false},
		{"trailing comma", `{"hostname":"h",}`, false},
		{"trailing comma in array", `{"process":{"args":["a",]}}`, false},
		{"missing colon", `{"hostname" "h"}`, false},
		{"missing comma", `{"hostname":"h" "domainname":"d"}`, false},
		{"bom", "\ufeff{}", false},
		{"unknown top-level key", `{"ociVersion":"1","x-custom":{"a":[1,2,{"b":null}]}}`, false},
		{"unknown nested key", `{"process":{"args":["a"],"scheduler":{"policy":"SCHED_OTHER"}}}`, false},
		{"vm", `{"vm":{"kernel":{"path":"/k"}}}`, false},
		{"intelRdt", `{"linux":{"intelRdt":{"closID":"x"}}}`, false},
		{"blockIO", `{"linux":{"resources":{"blockIO":{"weight":10}}}}`, false},
		{"case-variant key", `{"OCIVersion":"1","Process":{"Args":["a"]}}`, false},
		{"case-variant nested key", `{"process":{"ARGS":["a"],"Cwd":"/"}}`, false},
		{"kelvin sign key", "{\"hostname\":\"h\",\"\u212aey\":1}", false},
		{"escaped key", `{"hostn\u0061me":"h"}`, false},
		{"duplicate key", `{"hostname":"a","hostname":"b"}`, false},
		{"duplicate object merges", `{"process":{"args":["a"]},"process":{"cwd":"/"}}`, false},
		{"duplicate nested key", `{"process":{"user":{"uid":1},"user":{"gid":2}}}`, false},
		{"duplicate key case-variant", `{"hostname":"a","Hostname":"b"}`, false},
		{"string for number", `{"process":{"user":{"uid":"1"}}}`, false},
		{"number for string", `{"hostname":1}`, false},
		{"bool for string", `{"hostname":true}`, false},
		{"object for array", `{"process":{"args":{}}}`, false},
		{"array for object", `{"process":[]}`, false},
		{"string for bool", `{"process":{"terminal":"true"}}`, false},
		{"number for bool", `{"process":{"terminal":1}}`, false},
		{"object for map value", `{"annotations":{"a":{}}}`, false},
		{"null map value", `{"annotations":{"a":null}}`, false},
		{"null array element", `{"process":{"args":["a",null]}}`, false},
		{"null struct element", `{"mounts":[null]}`, false},
		{"negative uint", `{"process":{"user":{"uid":-1}}}`, false},
		{"negative zero uint", `{"process":{"user":{"uid":-0}}}`, false},
		{"uint32 overflow", `{"process":{"user":{"uid":4294967296}}}`, false},
		{"uint64 overflow", `{"process":{"rlimits":[{"hard":18446744073709551616}]}}`, false},
		{"int64 overflow", `{"linux":{"resources":{"memory":{"limit":9223372036854775808}}}}`, false},
		{"int64 underflow", `{"linux":{"resources":{"memory":{"limit":-9223372036854775809}}}}`, false},
		{"fraction", `{"process":{"user":{"uid":1.0}}}`, false},
		{"exponent", `{"process":{"user":{"uid":1e3}}}`, false},
		{"leading zero", `{"process":{"user":{"uid":01}}}`, false},
		{"plus sign", `{"process":{"user":{"uid":+1}}}`, false},
		{"lone minus", `{"process":{"user":{"uid":-}}}`, false},
		{"invalid utf-8", "{\"hostname\":\"a\xffb\"}", false},
		{"invalid utf-8 after escape", "{\"hostname\":\"\\n\xc3\"}", false},
		{"encoded surrogate", "{\"hostname\":\"\xed\xa0\x80\"}", false},
		{"lone high surrogate", `{"hostname":"\ud800"}`, false},
		{"lone low surrogate", `{"hostname":"\udc00x"}`, false},
		{"high surrogate then other escape", `{"hostname":"\ud800\u0041"}`, false},
		{"high surrogate then high", `{"hostname":"\ud800\ud800\udc00"}`, false},
		{"short \\u", `{"hostname":"\u12"}`, false},
		{"bad escape", `{"hostname":"\x"}`, false},
		{"raw control character", "{\"hostname\":\"a\tb\"}", false},
		{"unterminated string", `{"hostname":"a`, false},
		{"nul", `{"process":nul}`, false},
		{"nullx", `{"process":nullx}`, false},
		{"truex", `{"process":{"terminal":truex}}`, false},
	}
	return docs
}

func TestDecodeSpecMatchesEncodingJSON(t *testing.T) {
	for _, doc := range specDocs(t) {
		t.Run(doc.name, func(t *testing.T) {
			fast := sameAsEncodingJSON(t, []byte(doc.json))
			if doc.fast && !fast {
				t.Errorf("the fast path leaves it to encoding/json")
			}
		})
	}
}

// TestDecodeSpecRoundTrip: every field of the fast subset, marshalled by
// encoding/json, comes back as it was, on the fast path.
func TestDecodeSpecRoundTrip(t *testing.T) {
	want := fullSpec()
	for _, indent := range []bool{false, true} {
		data := mustMarshal(t, want, indent)
		got, fast := decodeSpecFast([]byte(data))
		if !fast {
			t.Fatalf("the fast path leaves a marshalled spec to encoding/json:\n%s", data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n%#v\nwant\n%#v", got, want)
		}
	}
}

// TestDecodeSpecNumbers puts each number into a field of each integer type.
func TestDecodeSpecNumbers(t *testing.T) {
	fields := []string{
		`{"process":{"consoleSize":{"height":%s}}}`,                    // uint
		`{"process":{"user":{"uid":%s}}}`,                              // uint32
		`{"process":{"user":{"umask":%s}}}`,                            // *uint32
		`{"process":{"user":{"additionalGids":[%s]}}}`,                 // []uint32
		`{"process":{"rlimits":[{"hard":%s}]}}`,                        // uint64
		`{"process":{"oomScoreAdj":%s}}`,                               // *int
		`{"linux":{"devices":[{"major":%s}]}}`,                         // int64
		`{"linux":{"devices":[{"fileMode":%s}]}}`,                      // *os.FileMode
		`{"linux":{"resources":{"memory":{"limit":%s}}}}`,              // *int64
		`{"linux":{"resources":{"memory":{"swappiness":%s}}}}`,         // *uint64
		`{"linux":{"seccomp":{"defaultErrnoRet":%s}}}`,                 // *uint
		`{"linux":{"seccomp":{"syscalls":[{"args":[{"index":%s}]}]}}}`, // uint
		`{"linux":{"resources":{"memory":{"disableOOMKiller":%s}}}}`,   // *bool
		`{"linux":{"resources":{"devices":[{"allow":%s}]}}}`,           // bool
	}
	numbers := []string{
		"0", "-0", "1", "-1", "7", "00", "01", "-01", "1.0", "1.5", "1e2", "1E2", "1e+2", "1e-2", "0.0", "-0.0",
		"4294967295", "4294967296", "-4294967296", "2147483647", "-2147483648",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
		"18446744073709551615", "18446744073709551616", "99999999999999999999", "-18446744073709551616",
		"+1", "-", ".5", "1.", "0x10", "Infinity", "NaN", `"1"`, "true", "false", "null", "[]", "{}", "[1]", "1 2",
	}
	for _, f := range fields {
		for _, n := range numbers {
			sameAsEncodingJSON(t, []byte(strings.Replace(f, "%s", n, 1)))
		}
	}
}

// TestDecodeSpecStrings puts each string in each place a string goes.
func TestDecodeSpecStrings(t *testing.T) {
	places := []string{
		`{"hostname":%s}`,
		`{"process":{"args":[%s, %s]}}`,
		`{"annotations":{%s:%s}}`,
		`{"annotations":{%s:"a","a":%s}}`,
		`{"linux":{"namespaces":[{"type":%s}]}}`,
		`{"linux":{"seccomp":{"architectures":[%s]}}}`,
		`{%s:"x"}`,
		`{"process":{%s:[]}}`,
	}
	strs := []string{
		`""`, `"a"`, `"args"`, `"hostname"`, `"Hostname"`, `"\u0061rgs"`, `"\"\\\/\b\f\n\r\t"`, `"\u0000"`, `"\u00e9"`, `"\u00E9"`,
		`"\uD83D\uDE00"`, `"\ud83d\ude00"`, `"\uD83D"`, `"\uDE00"`, `"\uD83Dx"`, `"\uD83D\u0041"`, `"\uD83D\uD83D"`, `"\uD83D\\"`,
		`"\u12"`, `"\u12g4"`, `"\x"`, `"\'"`, `"\`, `"a`, "\"\u00e9\"", "\"\U0001F600\"", "\"\xff\"", "\"\xc3\xa9\xc3\"",
		"\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\"", "\"\xf4\x90\x80\x80\"", "\"\xc0\x80\"", "\"\x01\"", "\"\x1f\"", "\"\x7f\"", "\"\t\"",
		"\"\\u00e9\xff\"", "\"\\n\x1f\"", "\"\\n\t\"", "\"\\n\xe2\x82\"", `null`, `1`, `[]`,
	}
	for _, p := range places {
		for _, s := range strs {
			sameAsEncodingJSON(t, []byte(strings.ReplaceAll(p, "%s", s)))
		}
	}
}

// TestDecodeSpecDamaged cuts and damages the typical documents at every
// byte.
func TestDecodeSpecDamaged(t *testing.T) {
	for _, doc := range []string{engineSpecJSON, mustMarshal(t, fullSpec(), false)} {
		for i := range len(doc) {
			sameAsEncodingJSON(t, []byte(doc[:i]))
			sameAsEncodingJSON(t, []byte(doc[:i]+doc[i+1:]))
			for _, c := range []string{",", "}", "]", "\"", "0", "-", "\\"} {
				sameAsEncodingJSON(t, []byte(doc[:i]+c+doc[i:]))
			}
		}
	}
}

// TestLoadSpecFastPath: LoadSpec decodes a typical bundle without
// encoding/json, so that a decoder that always fell back (and so always
// "matched") fails here.
func TestLoadSpecFastPath(t *testing.T) {
	for _, doc := range []string{runcSpecJSON, engineSpecJSON, mustMarshal(t, testSpec(), false)} {
		if _, fast := decodeSpecFast([]byte(doc)); !fast {
			t.Errorf("the fast path leaves a typical spec to encoding/json:\n%s", doc)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/config.json", []byte(runcSpecJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSpec(dir)
	if err != nil || s.Hostname != "runc" || len(s.Mounts) != 7 {
		t.Fatalf("LoadSpec: %v, %+v", err, s)
	}
	if err := os.WriteFile(dir+"/config.json", []byte(`{"process":{"user":{"uid":-1}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var want specs.Spec
	wantErr := json.Unmarshal([]byte(`{"process":{"user":{"uid":-1}}}`), &want)
	if _, err := LoadSpec(dir); err == nil || !strings.HasSuffix(err.Error(), ": "+wantErr.Error()) ||
		!strings.HasPrefix(err.Error(), "unable to parse "+dir+"/config.json: ") {
		t.Errorf("LoadSpec of a bad spec: %v, want encoding/json's %v", err, wantErr)
	}
}

func FuzzDecodeSpec(f *testing.F) {
	for _, doc := range specDocs(f) {
		f.Add([]byte(doc.json))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsEncodingJSON(t, data)
	})
}
