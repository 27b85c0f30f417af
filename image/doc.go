// Package image is the local store of OCI and Docker images: it pulls an
// image from its registry (resuming interrupted blobs, with retries, a
// bound on concurrent fetches and a rate cap), or imports one from an OCI
// layout, an oci-archive or a docker-archive (Import), keeps the blobs and
// the unpacked layers on disk, and hands the daemon what a container needs
// to run it (the parsed config and the layer directories, lowest first)
// without any network. Export writes a stored image as an oci-archive; GC
// and Prune remove the images nothing uses, least recently used first,
// when the file system fills up (gc.go).
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
//	ROOT/tmp/                       blobs being imported or written whole
//	                                (manifests), and oci-archives being
//	                                read (import-*).
//	ROOT/partial/<hex>              a blob being fetched: a name of its
//	                                digest alone, so that an interrupted
//	                                fetch (cut, cancelled, killed process)
//	                                resumes from its bytes with a Range
//	                                request; flocked by its writer; renamed
//	                                into blobs/ once verified (resume.go).
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
// them. Partial blobs are kept longer: a pull deletes those not written
// for a day that no process holds; garbage collection leaves them alone.
//
// # Fetching
//
// A pull refuses to start when the blobs it lacks, plus twice their
// compressed size for unpacking, exceed the free space of the root
// (ErrNoSpace). It fetches at most Options.PullConcurrency blobs at once
// and no faster than Options.PullRate, both for the whole store; a fetch
// that fails for a reason that may pass (network, 5xx, 429) is retried
// with exponential backoff and jitter, resuming from the bytes received.
//
// # Invariants
//
// A reference is recorded in refs.json only after every blob it needs is in
// blobs/ and every layer in layers/sha256/. Each of those appears by an
// atomic rename, so a pull killed at any point leaves nothing that Get reads
// back as good; Get still checks that every needed file is present. Several
// processes (the daemon and the CLI) may use one root at once: concurrent
// fetches of one blob take turns on its partial file (the second finds the
// blob stored); concurrent unpacks of one layer use distinct temp names,
// and the loser of the final rename drops its copy. In one process,
// concurrent pulls fetch and unpack each blob once.
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
