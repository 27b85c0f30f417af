package desired

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// ParseQuantity parses a Kubernetes-style quantity: a non-negative decimal
// number ("1", "0.5", ".5", "1.") followed by an optional suffix, one of the
// binary Ki Mi Gi Ti Pi Ei (powers of 1024), the decimal n u m k M G T P E
// (powers of 1000; "m" is milli) or an exponent e<int>/E<int> ("1e9").
// It returns the exact value.
func ParseQuantity(s string) (*big.Rat, error) {
	if s == "" {
		return nil, errors.New("empty quantity")
	}
	if len(s) > 64 {
		return nil, errors.New("quantity too long")
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, suffix := s[:i], s[i:]
	if strings.Count(num, ".") > 1 || num == "" || num == "." {
		return nil, errors.New("not a number")
	}
	if strings.HasPrefix(num, ".") {
		num = "0" + num
	}
	num = strings.TrimSuffix(num, ".")
	v, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, errors.New("not a number")
	}
	mul := func(base, exp int64) *big.Rat {
		return v.Mul(v, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil)))
	}
	switch suffix {
	case "":
		return v, nil
	case "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		return mul(1024, int64(strings.Index("KMGTPE", suffix[:1])+1)), nil
	case "k", "M", "G", "T", "P", "E":
		return mul(1000, int64(strings.Index("kMGTPE", suffix)+1)), nil
	case "m", "u", "n":
		d := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(1000), big.NewInt(int64(strings.Index("mun", suffix)+1)), nil))
		return v.Quo(v, d), nil
	}
	if suffix[0] == 'e' || suffix[0] == 'E' {
		exp, err := strconv.ParseInt(suffix[1:], 10, 8)
		if err != nil || exp > 30 || exp < -30 {
			return nil, errors.New("bad exponent")
		}
		if exp >= 0 {
			return mul(10, exp), nil
		}
		d := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(-exp), nil))
		return v.Quo(v, d), nil
	}
	return nil, errors.New("unknown suffix " + strconv.Quote(suffix))
}

// ceilInt64 rounds v up to an integer, reporting whether it fits in int64.
func ceilInt64(v *big.Rat) (int64, bool) {
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false
	}
	return q.Int64(), true
}

// errTooLarge is returned by parseBytes and parseMillis for a well-formed
// quantity beyond what they hold: the caller reports it as out of range.
var errTooLarge = errors.New("too large")

// The ranges the kernel (or, for the memory minimum, docker) accepts for
// the quantities of a manifest, checked by Parse so that a value that
// cannot work is refused when validated rather than at every create.
const (
	// pageSize is the page the kernel counts memory and tmpfs sizes in
	// (4 KiB on x86-64 and on arm64's default kernels).
	pageSize = 4096
	// maxBytes is the largest memory limit or tmpfs size: the kernel's
	// page counters hold at most LONG_MAX / PAGE_SIZE pages
	// (PAGE_COUNTER_MAX), that is 2^63 less one page in bytes.
	maxBytes     = math.MaxInt64 - (pageSize - 1)
	maxBytesText = "8Ei less 4Ki (9223372036854771712)"
	// minMemory is docker's minimum memory limit (6 MiB): the kernel
	// accepts one page, but a container cannot start in less.
	minMemory = 6 << 20
	// maxCPUMillis is 8192 CPUs, the largest NR_CPUS a Linux kernel can
	// be built with (x86-64 MAXSMP); the quota for it (819.2 s per 100 ms
	// period) is far below the kernel's bound on cpu.max (2^44-1 µs),
	// which larger values reach (quota = millis × 100 µs).
	maxCPUMillis = 8192 * 1000
	// maxPids is the kernel's PID_MAX_LIMIT on 64-bit (4 × 1024 × 1024):
	// pids.max refuses anything larger with EINVAL.
	maxPids = 4 << 20
)

// parseBytes parses a memory or size quantity into bytes, rounding up.
// A value beyond int64 is errTooLarge.
func parseBytes(s string) (int64, error) {
	v, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	n, ok := ceilInt64(v)
	if !ok {
		return 0, errTooLarge
	}
	return n, nil
}

// parseMillis parses a CPU quantity ("0.5", "500m", "2") into millicores,
// rounding up as Kubernetes' MilliValue does. A value beyond 2^40
// millicores is errTooLarge.
func parseMillis(s string) (int64, error) {
	v, err := ParseQuantity(s)
	if err != nil {
		return 0, err
	}
	n, ok := ceilInt64(v.Mul(v, big.NewRat(1000, 1)))
	if !ok || n > 1<<40 {
		return 0, errTooLarge
	}
	return n, nil
}

// FormatBytes renders n with the largest binary suffix that divides it
// exactly (268435456 → "256Mi"), for messages.
func FormatBytes(n int64) string {
	for i, suf := range []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"} {
		unit := int64(1) << (10 * (6 - i))
		if n != 0 && n%unit == 0 {
			return strconv.FormatInt(n/unit, 10) + suf
		}
	}
	return strconv.FormatInt(n, 10)
}
