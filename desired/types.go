package desired

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// RestartPolicy says what to do when a container's process exits.
type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "always"     // default
	RestartOnFailure RestartPolicy = "on-failure" // non-zero exit or OOM kill
	RestartNever     RestartPolicy = "never"
)

// Container is one container that should exist, as converted from one
// manifest document. Values are immutable once delivered in a Set.
type Container struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Source is the manifest file it came from (absolute path) and Doc the
	// document's index in that file (0-based).
	Source string `json:"source"`
	Doc    int    `json:"doc"`
	// Line is the line of the document's metadata.name (for messages).
	Line int `json:"line,omitempty"`

	// Spec is the generated OCI runtime spec (root.path is absolute).
	Spec *specs.Spec `json:"spec"`
	// Hash is the spec hash: sha256 over the normalized Spec and every
	// manifest field that is not in the spec but matters (restart, stop).
	// Reformatting or reordering the manifest leaves it unchanged.
	Hash string `json:"hash"`
	// BaseHash is Hash computed with linux.resources left out: when only
	// BaseHash is equal the change can be applied in place (cgroup update).
	BaseHash string `json:"baseHash"`

	Restart     RestartPolicy `json:"restart"`
	StopSignal  string        `json:"stopSignal"`  // e.g. "SIGTERM"
	StopTimeout time.Duration `json:"stopTimeout"` // then SIGKILL
	// Runtime runs the container: RuntimeNative, RuntimeRunc, RuntimeCrun
	// or a runtime name configured on the daemon. Part of Hash.
	Runtime string `json:"runtime,omitempty"`

	// Image is the normalized image reference (spec.image), "" when the
	// root is a directory; PullPolicy its spec.imagePullPolicy.
	Image      string     `json:"image,omitempty"`
	PullPolicy PullPolicy `json:"imagePullPolicy,omitempty"`
	// ImageDigest is the manifest digest of the image the container runs
	// ("sha256:…"), part of Hash. It is "" until the image is resolved
	// (WithImage): such a definition cannot be created yet, and Spec and
	// Hash are provisional.
	ImageDigest string `json:"imageDigest,omitempty"`
	// ImageWait says why an unresolved image is not there yet ("pulling
	// docker.io/library/busybox:latest: 1.2 of 2.1 MB"); ImageFailed says
	// that its pull failed (ImageWait has the error). Set by the resolver
	// for the planner; never recorded.
	ImageWait   string `json:"-"`
	ImageFailed bool   `json:"-"`
	// ImageHealth is the image's HEALTHCHECK as a probe (WithImage), nil
	// when it has none. It applies when the manifest has no spec.health
	// (Probe); like spec.health it is not part of Hash.
	ImageHealth *Health `json:"imageHealth,omitempty"`
	// ImageHealthNote says why the image's HEALTHCHECK is not used
	// although it has one (a form not understood, an exec probe in a
	// container of another runtime); never recorded.
	ImageHealthNote string `json:"-"`

	// AfterLines are the lines of the names in spec.after, in order (for
	// the errors of the directory-wide check); never recorded.
	AfterLines []int `json:"-"`

	// Manifest is the parsed document, normalized (defaults applied,
	// quantities in base units), for ChangedFields and for display.
	Manifest *Manifest `json:"manifest,omitempty"`
}

// Unresolved says whether c runs an image that is not resolved yet.
func (c *Container) Unresolved() bool { return c.Image != "" && c.ImageDigest == "" }

// FileStatus is what the loader made of one manifest file.
type FileStatus struct {
	Path string `json:"path"`
	// ContentHash is the sha256 of the bytes read; equal hashes mean no work.
	ContentHash string `json:"contentHash"`
	// Containers are the names the file defines (last good version when the
	// file is currently invalid).
	Containers []string `json:"containers"`
	// Errors is empty when the file is valid. A file with errors applies
	// nothing: its last good definitions stay in force.
	Errors []*Error `json:"errors,omitempty"`
}

// Error is one validation problem, located precisely enough to fix it:
// "web.yaml:14: spec.resources.memory: "12XB" is not a quantity (use e.g. 256Mi)".
type Error struct {
	File  string `json:"file"`
	Line  int    `json:"line,omitempty"` // 1-based; 0 when unknown
	Field string `json:"field,omitempty"`
	Msg   string `json:"message"`
}

// Set is the complete desired state: every container that should exist,
// and the status of every file that was looked at.
type Set struct {
	Containers map[string]*Container  `json:"containers"`
	Files      map[string]*FileStatus `json:"files"`
	// Revision is the applied revision when the manifests directory is a
	// git checkout or a git-sync link ("" when unknown).
	Revision string `json:"revision,omitempty"`

	// What a Loader knows of the Sets it makes (see ChangedSince and
	// Invalid); the zero values claim nothing.
	id      *setID   // this Set
	from    *setID   // the Set it was made from by applying some files alone
	changed []string // the names those files define or defined
	clean   bool     // no file in error
}

// setID tells apart the Sets a Loader made (not empty: each is a distinct
// pointer).
type setID struct{ _ byte }

// ChangedSince returns the names whose definition, or whose file's status,
// may differ between prev and s, when s is known to have been made from
// prev by a Load that applied some files alone (Loader); false when that
// is not known, and the two Sets are to be compared.
func (s Set) ChangedSince(prev Set) ([]string, bool) {
	if s.from == nil || s.from != prev.id {
		return nil, false
	}
	return s.changed, true
}

// Invalid returns the files in error, in no particular order: none at once
// for a Set its Loader knows to have none.
func (s Set) Invalid() []*FileStatus {
	if s.clean {
		return nil
	}
	var out []*FileStatus
	for _, f := range s.Files {
		if f != nil && len(f.Errors) > 0 {
			out = append(out, f)
		}
	}
	return out
}
