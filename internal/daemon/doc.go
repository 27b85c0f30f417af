// Package daemon wires reconciled's parts into the daemon that `reconciled
// run` starts: the manifest watcher (package desired), the observer and
// records (package actual), the loop and planner (package reconciler) and
// the OCI runtime (package executor), plus what only the daemon does: a
// pidfd per running container so an exit is seen at once, the status
// server on a unix socket and the status files, and the containers' log
// files with their rotation.
//
// Runtimes: a container whose spec carries the dev.reconciled.runtime
// annotation (spec.runtime other than native) is created by that
// OCI-CLI runtime (package executor/ociruntime: runc, crun, or a
// --runtime NAME=PATH binary); every later operation goes to the runtime
// its state names, not the manifest's, so a container is always stopped
// and deleted by the runtime that made it (the choice is
// ociruntime.Runtimes'). An unknown runtime or a
// missing binary fails that container's create, never the daemon; a
// container whose runtime is gone is still deleted (processes killed,
// cgroup and state removed without the binary).
//
// It also holds the clients' side of the status socket and the state
// directory's layout, for the status, plan and logs commands.
//
// Images: the daemon resolves the containers that run an image through
// its image store (imageResolver: pulls in the background, one per
// reference, caches what it resolved), mounts their root filesystems under
// STATE/rootfs (a shared bind, so that spare inits see them), watches the
// store's references (a moved tag recreates Always containers), imports
// the archives dropped in the import directory and collects the images
// nothing needs when the store's file system fills up.
//
// It must not decide what to do about a container (the planner does), nor
// touch anything outside its state directory, its log directory, its
// image store and import directory, and the containers it created there. Stopping the daemon (context cancelled)
// stops reconciling and leaves every container running.
package daemon
