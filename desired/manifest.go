package desired

import (
	"encoding/json"
	"time"
)

// APIVersion and Kind are the only accepted values of the manifest header.
const (
	APIVersion = "reconciled.dev/v1"
	Kind       = "Container"
)

// Annotation keys the generated spec carries.
const (
	AnnotationName     = "dev.reconciled.name"
	AnnotationSpecHash = "dev.reconciled.spec-hash"
	// AnnotationRuntime names the runtime of a container whose
	// spec.runtime is not native (the executor reads it at create).
	AnnotationRuntime = "dev.reconciled.runtime"
	// AnnotationImage and AnnotationImageDigest name the image and the
	// manifest digest of a container whose root is an image (the daemon
	// mounts its root filesystem from them at create).
	AnnotationImage       = "dev.reconciled.image"
	AnnotationImageDigest = "dev.reconciled.image-digest"
	// AnnotationInit, "true", asks the native executor to run the process
	// under its own init (spec.init); see executor.InitAnnotation.
	AnnotationInit = "dev.reconciled.init"
	// AnnotationUserns, "auto", asks the daemon for a range of host IDs
	// for the container's user namespace (spec.userns: auto): it writes
	// linux.uidMappings and gidMappings at create.
	AnnotationUserns = "dev.reconciled.userns"
	// AnnotationIDMapRoot, "true", shows the root filesystem through an
	// idmapped mount with the container's mappings; see
	// executor.IDMapRootAnnotation.
	AnnotationIDMapRoot = "dev.reconciled.idmap-root"
)

// Limits of the loader.
const (
	MaxFileSize   = 1 << 20 // bytes per manifest file
	MaxContainers = 10000   // containers per directory
)

// Manifest is one parsed and validated manifest document in normalized form:
// defaults are applied, quantities are in base units, capability names carry
// the CAP_ prefix and are sorted, the signal is a SIG name. Two manifests that
// differ only in formatting, key order, comments or spelling of the same
// value (256Mi and 268435456, TERM and SIGTERM) are equal.
type Manifest struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   Metadata     `json:"metadata"`
	Spec       ManifestSpec `json:"spec"`
}

// Metadata is the manifest's metadata section.
type Metadata struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ManifestSpec is the manifest's spec section, normalized.
type ManifestSpec struct {
	// Image is spec.image, normalized (docker.io/library/busybox:latest);
	// "" when the root is a directory (Root.Path). The two are exclusive.
	Image string `json:"image,omitempty"`
	// ImagePullPolicy is spec.imagePullPolicy; "" when Image is "".
	ImagePullPolicy PullPolicy `json:"imagePullPolicy,omitempty"`
	Root            Root       `json:"root"`
	// Command is spec.command; with an image it replaces the image's
	// Entrypoint (and Cmd), and may be empty: the image's apply.
	Command []string `json:"command"`
	// Args is spec.args: replaces the image's Cmd; without an image it
	// follows Command.
	Args []string `json:"args,omitempty"`
	// UserFromImage says that spec.user was not given for an image
	// container: the image's User applies (root when it sets none).
	UserFromImage bool              `json:"userFromImage,omitempty" manifest:"-"`
	Env           map[string]string `json:"env,omitempty"`
	WorkingDir    string            `json:"workingDir"`
	User          User              `json:"user"`
	Hostname      string            `json:"hostname"`
	Network       Network           `json:"network"`
	Mounts        []Mount           `json:"mounts,omitempty"`
	Resources     Resources         `json:"resources"`
	Capabilities  Capabilities      `json:"capabilities"`
	Restart       RestartPolicy     `json:"restart"`
	Stop          Stop              `json:"stop"`
	// Runtime is spec.runtime: RuntimeNative (default), RuntimeRunc,
	// RuntimeCrun, or the name of a runtime the daemon is configured with.
	Runtime string `json:"runtime"`
	// Init is spec.init: a tiny PID 1 (executor/waiter's init) runs the
	// command as its child, forwards it every signal and reaps orphans.
	Init bool `json:"init,omitempty"`
	// OCI is the runtime-spec fragment as JSON (nil when absent); it is
	// merged over the generated spec as an RFC 7396 merge patch.
	OCI json.RawMessage `json:"oci,omitempty"`
	// Seccomp is spec.seccomp: "" (default: SeccompDefault),
	// SeccompUnconfined, or the absolute path of a profile file, whose
	// content (read when the manifest is) is SeccompProfile.
	Seccomp        string `json:"seccomp,omitempty"`
	SeccompProfile []byte `json:"-"`
	// Health is spec.health (nil: no probe); see Health.
	Health *Health `json:"health,omitempty"`
	// HealthNone is `spec.health: none`: no probe, not even the image's
	// HEALTHCHECK (docker's --no-healthcheck).
	HealthNone bool `json:"healthNone,omitempty" manifest:"-"`
	// Notify is spec.notify: the container says READY=1 on $NOTIFY_SOCKET.
	Notify bool `json:"notify,omitempty"`
	// After is spec.after: the containers to wait for before this one is
	// created.
	After []Dependency `json:"after,omitempty"`
	// Userns is spec.userns: "" (default, the host's user namespace) or
	// UsernsAuto.
	Userns string `json:"userns,omitempty"`
}

// Values of spec.userns.
const (
	UsernsHost = "host" // default: the host's user namespace (normalized to "")
	// UsernsAuto: a user namespace of the container's own, with 65,536
	// host IDs the daemon allocates from /etc/subuid and /etc/subgid.
	UsernsAuto = "auto"
)

// UsernsSize is how many host UIDs (and GIDs) a userns: auto container
// gets: IDs 0-65535 inside.
const UsernsSize = 65536

// PullPolicy is spec.imagePullPolicy.
type PullPolicy string

const (
	PullIfNotPresent PullPolicy = "IfNotPresent" // default: pull when not stored
	PullAlways       PullPolicy = "Always"       // resolve the tag again at every create
	PullNever        PullPolicy = "Never"        // run only from the store
)

// Root is spec.root.
type Root struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

// User is spec.user: numeric IDs. A user given as "uid" alone gets gid = uid.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// Network is spec.network.
type Network string

const (
	NetworkHost    Network = "host"    // default: the host's network namespace
	NetworkPrivate Network = "private" // own namespace with loopback only
)

// Mount is one entry of spec.mounts.
type Mount struct {
	Type     string   `json:"type"` // bind | tmpfs
	Source   string   `json:"source,omitempty"`
	Target   string   `json:"target"`
	Readonly bool     `json:"readonly,omitempty"`
	Size     int64    `json:"size,omitempty"`    // tmpfs, bytes; 0 = kernel default
	Options  []string `json:"options,omitempty"` // extra mount options, as written
}

// Resources is spec.resources; zero means "no limit".
type Resources struct {
	Memory    int64 `json:"memory,omitempty"`                   // bytes
	CPUMillis int64 `json:"cpuMillis,omitempty" manifest:"cpu"` // 1000 = one CPU
	Pids      int64 `json:"pids,omitempty"`
}

// Capabilities is spec.capabilities, names normalized to CAP_X and sorted;
// "ALL" stays "ALL".
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// Stop is spec.stop.
type Stop struct {
	Signal  string        `json:"signal"`  // SIG name, e.g. SIGTERM
	Timeout time.Duration `json:"timeout"` // then SIGKILL
}

// Runtimes every daemon knows; any other valid name must be configured
// on the daemon (reconciled run --runtime NAME=PATH).
const (
	RuntimeNative = "native" // default: reconciled's own executor
	RuntimeRunc   = "runc"
	RuntimeCrun   = "crun"
)

// Defaults.
const (
	DefaultStopSignal  = "SIGTERM"
	DefaultStopTimeout = 10 * time.Second
	DefaultPath        = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
