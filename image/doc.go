// Package image is the local store of OCI and Docker images: it pulls an
// image from its registry (or imports one from an OCI layout, an
// oci-archive or a docker-archive: Import), keeps the blobs and the unpacked layers on disk,
// and hands the daemon what a container needs to run it (the parsed config
// and the layer directories, lowest first) without any network.
//
// # Layout
//
// Everything lives under Options.Root (DefaultRoot), mode 0700:
//
//	ROOT/blobs/sha256/<hex>         content-addressed blobs: compressed layers,
//	                                configs, manifests, indexes. A file under
//	                                this name is complete and its sha256 is
//	                                <hex>: it is written in ROOT/tmp, verified
//	                                while streaming, fsynced, then renamed here.
//	ROOT/layers/sha256/<diffid hex>/ one unpacked layer, keyed by its diff ID
//	                                (the sha256 of the uncompressed tar, checked
//	                                while unpacking). No further nesting: these
//	                                paths go into the overlay lowerdir option,
//	                                which must fit in a page.
//	ROOT/layers/tmp-<random>/       a layer being unpacked; renamed to its
//	                                final name when whole and verified.
//	ROOT/layers/rm-<random>/        a layer being removed (renamed out of the
//	                                way first, so no reader finds half of it).
//	ROOT/tmp/                       blobs being fetched or imported, and
//	                                oci-archives being read (import-*).
//	ROOT/refs.json                  normalized reference -> manifest digest,
//	                                pull and last-use times (refsFile, versioned).
//	ROOT/refs.lock                  flock held while refs.json is rewritten
//	                                (read-modify-write, temp file, fsync, rename).
//	ROOT/gc.lock                    flock: shared by every running Pull,
//	                                exclusive while Remove collects garbage, so
//	                                that no blob a running pull relies on is
//	                                deleted under it.
//
// Temp entries older than an hour are left by killed processes; Open deletes
// them.
//
// # Invariants
//
// A reference is recorded in refs.json only after every blob it needs is in
// blobs/ and every layer in layers/sha256/. Each of those appears by an
// atomic rename, so a pull killed at any point leaves nothing that Get reads
// back as good; Get still checks that every needed file is present. Several
// processes (the daemon and the CLI) may use one root at once: concurrent
// fetches of one blob or unpacks of one layer use distinct temp names, and
// the loser of the final rename drops its copy. In one process, concurrent
// pulls fetch and unpack each blob once.
//
// # What it must not do
//
// It must not talk plain HTTP to a registry that is neither loopback nor
// listed in Options.Insecure, must not record anything it has not verified
// against its digest, must not follow a symlink or cross a mount point when
// it deletes a layer, and must not decide whether an image is in use: the
// caller checks that before Remove. Unpacking a layer tar (whiteouts, escapes
// out of the layer directory) is image/layer's job.
package image
