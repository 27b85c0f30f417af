// Package desired is the source of desired state: it turns a directory of
// manifest files into a Set of containers, each with its generated OCI
// runtime spec and spec hash, and watches the directory for changes.
//
// The core is pure: Parse (bytes to containers or located errors) and Next
// (previous Set plus what Scan read to the next Set, keeping each invalid
// file's last good definitions). Scan, Loader and Watch do the I/O: a
// Loader keeps the last read of each file and opens only those that an
// event named or whose stat changed, and when the events name nothing but
// regular files it reads just those, without a walk; Watch tells it which
// paths the events named, and has every file read again after lost events
// and at a resync that finds something changed.
//
// It must not import actual/, reconciler/ or executor/, start containers,
// or read anything but the manifests directory, the git metadata beside it,
// the directories on the way to them (the trust check), and the paths
// manifests name (root.path and bind sources, for validation).
package desired
