package desired

import "strings"

// Hand-written matchers for the few fixed shapes the package checks (names,
// label parts, commit hashes). They replace package-level regexps: every
// start of the binary (each CLI call and each re-exec'd container stage)
// compiled those in init, about 0.4 ms and 1400 allocations, although most
// starts never parse a manifest. Each function's comment gives the exact
// regexp it is equivalent to; names_test.go checks them against it.

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool { return isLower(c) || isDigit(c) || ('A' <= c && c <= 'Z') }
func isHex(c byte) bool   { return isDigit(c) || ('a' <= c && c <= 'f') }

func isLowerOrDigit(c byte) bool { return isLower(c) || isDigit(c) }

// isDNS1123Label: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ (length unchecked).
func isDNS1123Label(s string) bool { return isLabel(s, isLowerOrDigit, "-") }

// isLabelName: ^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$ (length
// unchecked).
func isLabelName(s string) bool { return isLabel(s, isAlnum, "-_.") }

// isHostLabel: ^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$ (length unchecked).
func isHostLabel(s string) bool { return isLabel(s, isAlnum, "-") }

// isLabel: ^E([E<inner>]*E)?$, E the bytes that end accepts and <inner>
// the bytes of inner (length unchecked).
func isLabel(s string, end func(byte) bool, inner string) bool {
	if s == "" || !end(s[0]) || !end(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !end(c) && strings.IndexByte(inner, c) < 0 {
			return false
		}
	}
	return true
}

// ValidRuntimeName reports whether v can name a runtime: native, runc,
// crun, or a name the daemon may be configured with (`run --runtime
// NAME=PATH`): ^[a-z0-9][a-z0-9_-]{0,62}$. Whether a configured runtime of
// that name exists is the daemon's to say (a per-container error), not the
// manifest's.
func ValidRuntimeName(v string) bool {
	if v == "" || len(v) > 63 || (!isLower(v[0]) && !isDigit(v[0])) {
		return false
	}
	for i := 1; i < len(v); i++ {
		if c := v[i]; !isLower(c) && !isDigit(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// isHexSHA: ^[0-9a-f]{40}([0-9a-f]{24})?$, a SHA-1 or SHA-256 commit.
func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// revDirSHA returns the commit a directory named "<sha>" or "rev-<sha>"
// names (git-sync's link targets), or "":
// ^(?:rev-)?([0-9a-f]{40}(?:[0-9a-f]{24})?)$.
func revDirSHA(name string) string {
	if len(name) > 4 && name[:4] == "rev-" {
		name = name[4:]
	}
	if isHexSHA(name) {
		return name
	}
	return ""
}

// cutYAMLLine splits yaml.v3's "yaml: line 3: msg" into "3" and "msg"
// (ok false otherwise): ^yaml: line (\d+): (.*)$, where "." matches no
// newline.
func cutYAMLLine(s string) (line, msg string, ok bool) {
	const prefix = "yaml: line "
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return "", "", false
	}
	s = s[len(prefix):]
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	if n == 0 || len(s)-n < 2 || s[n:n+2] != ": " {
		return "", "", false
	}
	line, msg = s[:n], s[n+2:]
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' {
			return "", "", false
		}
	}
	return line, msg, true
}
