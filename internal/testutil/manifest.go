package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// WriteManifest puts content into dir/file as deployment tools do: a
// temp file in dir (a dotfile, which the daemon skips) renamed over the
// old one. It returns the content's sha256 in hex, the contentHash that
// `reconciled status` shows for the file once the daemon has read it.
func WriteManifest(t testing.TB, dir, file, content string) string {
	t.Helper()
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}
