package image

import "path/filepath"

// Digests returns every recorded reference with its manifest digest, from
// refs.json alone (no blob is read): cheap enough to call on every change
// of RefsPath.
func (s *Store) Digests() (map[string]string, error) {
	rf, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rf.Refs))
	for ref, rec := range rf.Refs {
		out[ref] = rec.Digest
	}
	return out, nil
}

// RefsPath is refs.json, replaced by a rename whenever a reference is
// recorded, moved or removed (and when one is used): a watcher of its
// directory learns of every pull, by any process.
func (s *Store) RefsPath() string { return filepath.Join(s.root, "refs.json") }
