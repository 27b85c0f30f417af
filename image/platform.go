package image

import (
	"bufio"
	"os"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// HostPlatform is the platform this process runs on, as an image index
// names it: runtime.GOOS and GOARCH, with the variant for arm (v5, v6, v7,
// read from /proc/cpuinfo) and arm64 (v8).
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch runtime.GOARCH {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = armVariant(cpuArchitecture())
	}
	return p
}

// cpuArchitecture is the "CPU architecture" field of /proc/cpuinfo, or "".
func cpuArchitecture() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "CPU architecture" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// armVariant maps /proc/cpuinfo's "CPU architecture" to a variant, as
// containerd does; a 64-bit core running 32-bit code is a v8.
func armVariant(cpuArch string) string {
	switch cpuArch {
	case "5", "5T", "5TE", "5TEJ":
		return "v5"
	case "6", "6TEJ":
		return "v6"
	case "7", "7M", "?(12)", "?(13)", "?(14)", "?(15)", "?(16)", "?(17)":
		return "v7"
	case "8", "AArch64":
		return "v8"
	}
	return "v7"
}

// platformScore says how well an index entry for have fits want: 0 not
// at all, higher is better. OS and architecture must be equal. The variant
// is best equal; an entry without a variant fits anything; for arm an older
// variant runs on a newer CPU (v6 on v7).
func platformScore(want v1.Platform, have *v1.Platform) int {
	if have == nil || have.OS != want.OS || have.Architecture != want.Architecture {
		return 0
	}
	switch {
	case have.Variant == want.Variant:
		return 3
	case have.Variant == "":
		return 2
	case want.Architecture == "arm" && have.Variant < want.Variant && len(have.Variant) == len(want.Variant):
		return 1
	case want.Architecture == "arm64" && want.Variant == "" && have.Variant == "v8":
		return 3
	}
	return 0
}

// platformString is os/arch[/variant].
func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
