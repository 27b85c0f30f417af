package image

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"reconciled.dev/reconciled/internal/imageref"
)

// nameImages sets each image's refs (normalized, sorted) from want (the
// --name, parsed from arg) or the names the source gives it, and checks
// that no reference names two images.
func nameImages(imgs []*importImage, want *imageref.Ref, arg string) error {
	explicit := want != nil && (want.Digest != "" || hasTag(arg))
	if explicit && len(imgs) > 1 {
		var ds []string
		for _, im := range imgs {
			ds = append(ds, im.digest.String())
		}
		return fmt.Errorf("the source holds %d images (%s) and --name %s names one: give a repository alone to keep their tags, or import them one by one", len(imgs), strings.Join(ds, ", "), arg)
	}
	owner := map[string]*importImage{}
	for _, im := range imgs {
		var refs []string
		switch {
		case explicit:
			if want.Digest != "" && want.Digest != im.digest.String() && want.Digest != im.indexDigest.String() {
				return fmt.Errorf("--name %s: the image's digest is %s", arg, im.digest)
			}
			refs = []string{want.String()}
		case want != nil:
			for _, n := range im.names {
				tag, err := sourceTag(n)
				if err != nil {
					return err
				}
				if tag != "" {
					refs = append(refs, imageref.Ref{Registry: want.Registry, Repository: want.Repository, Tag: tag}.String())
				}
			}
			if len(refs) == 0 {
				refs = []string{want.String()} // the default tag
			}
		default:
			if len(im.names) == 0 {
				return fmt.Errorf("image %s has no name in the source: give one with --name REF", im.digest)
			}
			for _, n := range im.names {
				if isBareTag(n) {
					return fmt.Errorf("image %s is named only by the tag %q in the source: give --name REPOSITORY (or --name REPOSITORY:%s)", im.digest, n, n)
				}
				norm, err := imageref.Normalize(n)
				if err != nil {
					return fmt.Errorf("image %s: the source's name: %w", im.digest, err)
				}
				refs = append(refs, norm)
			}
		}
		sort.Strings(refs)
		refs = slices.Compact(refs)
		for _, r := range refs {
			if o := owner[r]; o != nil && o != im {
				return fmt.Errorf("%s would name two images (%s and %s)", r, o.digest, im.digest)
			}
			owner[r] = im
		}
		im.refs = refs
	}
	return nil
}

// hasTag says whether a reference as written has a tag (imageref gives
// one without a tag DefaultTag).
func hasTag(ref string) bool {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	return strings.LastIndexByte(ref, ':') > strings.LastIndexByte(ref, '/')
}

// isBareTag says whether a source's name is a tag alone ("1.4"), which
// needs a repository, rather than a reference.
func isBareTag(n string) bool { return !strings.ContainsAny(n, "/:@") }

// sourceTag is the tag of a source's name: the name itself for a bare
// tag, the reference's tag otherwise ("" for one by digest alone).
func sourceTag(n string) (string, error) {
	if isBareTag(n) {
		if _, err := imageref.Parse("x:" + n); err != nil {
			return "", fmt.Errorf("the source's tag %q: %w", n, err)
		}
		return n, nil
	}
	r, err := imageref.Parse(n)
	if err != nil {
		return "", fmt.Errorf("the source's name: %w", err)
	}
	if r.Digest != "" && !hasTag(n) {
		return "", nil
	}
	return r.Tag, nil
}
