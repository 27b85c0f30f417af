package desired

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// revision finds the git revision of the manifests directory real (already
// resolved through symlinks), without running git:
//
//   - the nearest .git at or above real: a directory, or a file
//     "gitdir: ..." (a worktree, as git-sync v4 makes them), whose HEAD is
//     read and followed through refs/ and packed-refs;
//   - otherwise a directory named by a commit, "rev-<sha>" or "<sha>", at
//     or above real (git-sync's link targets).
//
// It returns "" when neither is found.
func revision(real string) string {
	for d := real; ; d = filepath.Dir(d) {
		if rev := gitRevision(filepath.Join(d, ".git")); rev != "" {
			return rev
		}
		if sha := revDirSHA(filepath.Base(d)); sha != "" {
			return sha
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

func gitRevision(dotgit string) string {
	fi, err := os.Stat(dotgit)
	if err != nil {
		return ""
	}
	gitdir := dotgit
	if !fi.IsDir() {
		b, err := os.ReadFile(dotgit)
		if err != nil {
			return ""
		}
		line := strings.TrimSpace(string(b))
		p, ok := strings.CutPrefix(line, "gitdir: ")
		if !ok {
			return ""
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(dotgit), p)
		}
		gitdir = p
	}
	common := gitdir
	if b, err := os.ReadFile(filepath.Join(gitdir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitdir, c)
		}
		common = c
	}
	head, err := os.ReadFile(filepath.Join(gitdir, "HEAD"))
	if err != nil {
		return ""
	}
	ref := strings.TrimSpace(string(head))
	for i := 0; i < 5; i++ {
		if isHexSHA(ref) {
			return ref
		}
		name, ok := strings.CutPrefix(ref, "ref: ")
		if !ok || !strings.HasPrefix(name, "refs/") || strings.Contains(name, "..") {
			return ""
		}
		next := ""
		for _, d := range []string{gitdir, common} {
			if b, err := os.ReadFile(filepath.Join(d, filepath.FromSlash(name))); err == nil {
				next = strings.TrimSpace(string(b))
				break
			}
		}
		if next == "" {
			next = packedRef(common, name)
		}
		if next == "" {
			return ""
		}
		ref = next
	}
	return ""
}

func packedRef(common, name string) string {
	f, err := os.Open(filepath.Join(common, "packed-refs"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sha, ref, ok := strings.Cut(sc.Text(), " ")
		if ok && ref == name && isHexSHA(sha) {
			return sha
		}
	}
	return ""
}
