package layer

import "errors"

var (
	// ErrOverlayUnusable is returned by Mount when overlayfs cannot be used
	// on this host: the kernel has no overlay filesystem, or it refuses the
	// mount (the layers are on a filesystem overlay cannot stack on, the
	// upper directory's filesystem lacks what overlay needs, ...). Its text
	// is "overlayfs is not usable here"; the wrapping error says why.
	ErrOverlayUnusable = errors.New("overlayfs is not usable here")
	// ErrInvalidEntry is returned by Unpack for a tar entry it refuses: an
	// unsupported type, a hard link to a directory or to a missing file, a
	// non-directory as the layer root, an xattr that would steer overlayfs.
	ErrInvalidEntry = errors.New("invalid layer entry")
)
