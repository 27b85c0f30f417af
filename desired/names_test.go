package desired

import (
	"regexp"
	"strings"
	"testing"
)

// The regexps the hand-written matchers in names.go replace. They live
// here only, so the binary never compiles them at start.
var (
	reDNS1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	reLabelName    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	reHostLabel    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$`)
	reRuntimeName  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	reHexSHA       = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	reRevDir       = regexp.MustCompile(`^(?:rev-)?([0-9a-f]{40}(?:[0-9a-f]{24})?)$`)
	reYAMLLine     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// checkNames fails t where a matcher and its regexp disagree on s.
func checkNames(t *testing.T, s string) {
	t.Helper()
	for _, c := range []struct {
		name string
		got  bool
		re   *regexp.Regexp
	}{
		{"isDNS1123Label", isDNS1123Label(s), reDNS1123Label},
		{"isLabelName", isLabelName(s), reLabelName},
		{"isHostLabel", isHostLabel(s), reHostLabel},
		{"ValidRuntimeName", ValidRuntimeName(s), reRuntimeName},
		{"isHexSHA", isHexSHA(s), reHexSHA},
	} {
		if want := c.re.MatchString(s); c.got != want {
			t.Errorf("%s(%q) = %v, regexp %s says %v", c.name, s, c.got, c.re, want)
		}
	}
	want := ""
	if m := reRevDir.FindStringSubmatch(s); m != nil {
		want = m[1]
	}
	if got := revDirSHA(s); got != want {
		t.Errorf("revDirSHA(%q) = %q, regexp says %q", s, got, want)
	}
	line, msg, ok := cutYAMLLine(s)
	if m := reYAMLLine.FindStringSubmatch(s); (m != nil) != ok || (ok && (line != m[1] || msg != m[2])) {
		t.Errorf("cutYAMLLine(%q) = %q, %q, %v; regexp says %q", s, line, msg, ok, m)
	}
}

func TestNameMatchersAgreeWithRegexps(t *testing.T) {
	sha1 := strings.Repeat("0123456789abcdef", 3)[:40]
	sha256 := strings.Repeat("0123456789abcdef", 4)
	for _, s := range []string{
		"", "a", "A", "0", "-", "_", ".", "a-", "-a", "a-b", "a_b", "a.b", "A.b-C_d",
		"web-1", "Web", "a..b", "a__b", "a--b", "_a", "a_", ".a", "a.", "é", "a\n", "\na",
		"native", "runc", "crun", "my_runtime", "my-runtime", "1runtime", "_x",
		strings.Repeat("a", 62), strings.Repeat("a", 63), strings.Repeat("a", 64),
		"a" + strings.Repeat("_", 62), "a" + strings.Repeat("-", 62) + "b",
		sha1, sha256, sha1[:39], sha1 + "0", sha256 + "0", strings.ToUpper(sha1),
		sha1[:39] + "g", "rev-" + sha1, "rev-" + sha256, "rev-" + sha1[:39], "rev-",
		"rev" + sha1, "rev-rev-" + sha1, "xrev-" + sha1, sha1 + "\n",
		"yaml: line 3: did not find expected key", "yaml: line 0: x", "yaml: line : x",
		"yaml: line 3:x", "yaml: line 3: ", "yaml: line 3: a\nb", "yaml: line 3: a: b",
		"yaml: line 99999999999999999999: x", "yaml: line 3", "yaml: line x3: a",
		"yaml: line 3 : a", "yaml: mapping values are not allowed", " yaml: line 3: a",
		"yaml: line 3: \xff", "yaml: line ٣: a",
	} {
		checkNames(t, s)
	}
}

func FuzzNameMatchers(f *testing.F) {
	for _, s := range []string{"web-1", "A.b-C_d", "my_runtime", "rev-" + strings.Repeat("ab", 20), "yaml: line 3: x"} {
		f.Add(s)
	}
	f.Fuzz(checkNames)
}
