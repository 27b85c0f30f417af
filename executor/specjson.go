package executor

import (
	"encoding/json"
	"os"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// decodeSpec decodes a runtime spec (config.json) exactly as
// json.Unmarshal into a specs.Spec does: same value, same error.
//
// In a fresh process, which every `reconciled runtime create` is,
// encoding/json spends nearly 2 ms building its reflection tables for the
// spec's many types before it decodes anything. decodeSpecFast decodes the
// parts of a spec that runc-style and engine-made specs use, by hand, with
// no tables to build (measured in fresh processes on a 2-core VM, a
// runc-style config.json: 0.15 ms against 1.9 ms, most of the 0.15 ms the
// first touch of the heap's pages). Anything else (a field it does not
// know, a key in another case, a duplicate key, a value of the wrong type,
// a number the field cannot hold, invalid JSON) sends the whole document
// to json.Unmarshal, so that a spec reads the same whichever path decodes
// it and errors read as encoding/json's.
//
// On an error the spec is what json.Unmarshal left in it.
func decodeSpec(data []byte) (*specs.Spec, error) {
	if s, ok := decodeSpecFast(data); ok {
		return s, nil
	}
	var s specs.Spec
	err := json.Unmarshal(data, &s)
	return &s, err
}

// decodeSpecFast decodes data if it is valid JSON that uses only the
// fields below, each with a value json.Unmarshal would store without an
// error; ok is false otherwise, and the caller must then use
// json.Unmarshal. It never skips a value: every byte it accepts it has
// checked, so what it accepts encoding/json accepts too.
func decodeSpecFast(data []byte) (s *specs.Spec, ok bool) {
	d := specDecoder{data: data, str: string(data)}
	d.ws()
	s = new(specs.Spec)
	if !decSpec(&d, s) {
		return nil, false
	}
	d.ws()
	if d.i != len(d.data) {
		return nil, false // encoding/json refuses data after the value
	}
	return s, true
}

// specDecoder reads JSON from data at i. Its decode functions are called
// with i at a value's first byte and leave i just past it; they return
// false when the value is not one they can decode exactly as encoding/json
// would.
type specDecoder struct {
	data []byte
	i    int
	// str is data as a string: a string value without escapes is a
	// substring of it, so that the strings of a spec cost one allocation,
	// not one each (in a fresh process the first allocation of each size
	// touches new pages, which cost more than the decoding).
	str string
	// seen holds the keys of the objects being read, outermost first,
	// to find a key given twice.
	seen []string
	// buf holds the last string that had escapes, unquoted.
	buf []byte
}

func (d *specDecoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips c if it comes next.
func (d *specDecoder) consume(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// literal skips lit if it comes next.
func (d *specDecoder) literal(lit string) bool {
	if len(d.data)-d.i >= len(lit) && string(d.data[d.i:d.i+len(lit)]) == lit {
		d.i += len(lit)
		return true
	}
	return false
}

// null skips a null if one comes next. What follows it is checked by the
// caller, as after any value: "nullx" fails there.
func (d *specDecoder) null() bool { return d.literal("null") }

// isNull says whether a null comes next, without skipping it.
func (d *specDecoder) isNull() bool {
	return len(d.data)-d.i >= 4 && string(d.data[d.i:d.i+4]) == "null"
}

// object reads an object whose keys are a struct's fields: field decodes
// the value of key and returns false for a key it does not know. Keys
// must match a field exactly; encoding/json also matches them ignoring
// case, which is left to it. A key given twice sends the document to
// encoding/json too: it would decode the second value into what the first
// left (merging two objects), and one rule is simpler to get right than
// that one.
func (d *specDecoder) object(field func(key string) bool) bool {
	if !d.consume('{') {
		return false
	}
	d.ws()
	if d.consume('}') {
		return true
	}
	base := len(d.seen)
	for {
		d.ws()
		key, ok := d.key()
		if !ok {
			return false
		}
		for _, k := range d.seen[base:] {
			if k == key {
				return false
			}
		}
		d.seen = append(d.seen, key)
		d.ws()
		if !d.consume(':') {
			return false
		}
		d.ws()
		if !field(key) {
			return false
		}
		if !d.more() {
			d.seen = d.seen[:base]
			return d.consume('}')
		}
	}
}

// more skips what follows a member or an element up to and including a
// comma, and says whether there was one; if not, the caller consumes the
// closing bracket or fails.
func (d *specDecoder) more() bool {
	d.ws()
	return d.consume(',')
}

// key reads an object's key that is a field name: printable ASCII, no
// escapes (none of the spec's field names needs one; a key that has one is
// left to encoding/json).
func (d *specDecoder) key() (string, bool) {
	if !d.consume('"') {
		return "", false
	}
	start := d.i
	for ; d.i < len(d.data); d.i++ {
		c := d.data[d.i]
		if c == '"' {
			d.i++
			return d.str[start : d.i-1], true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return "", false
		}
	}
	return "", false
}

// text reads a string and returns it unquoted: a substring of d.str
// when it has no escapes. A string that is not valid UTF-8 is left to
// encoding/json (which replaces the bad bytes with U+FFFD), as is a \u
// escape of half a surrogate pair.
func (d *specDecoder) text() (string, bool) {
	if !d.consume('"') {
		return "", false
	}
	start := d.i
	for i := start; i < len(d.data); {
		c := d.data[i]
		switch {
		case c == '"':
			d.i = i + 1
			return d.str[start:i], true
		case c == '\\':
			return d.escaped(start, i)
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && n == 1 {
				return "", false
			}
			i += n
		}
	}
	return "", false
}

// escaped goes on with text from the first backslash, at i, of the
// string that starts at start, unquoting into d.buf.
func (d *specDecoder) escaped(start, i int) (string, bool) {
	b := append(d.buf[:0], d.data[start:i]...)
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.i = i + 1
			d.buf = b
			return string(b), true
		case c == '\\':
			if i+1 >= len(d.data) {
				return "", false
			}
			switch e := d.data[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(d.data[i+2:])
				if r < 0 {
					return "", false
				}
				if utf16.IsSurrogate(r) {
					// Only a high half followed by a low half is one
					// character; encoding/json turns anything else into
					// U+FFFD (and keeps what follows), which is left to it.
					if len(d.data) < i+8 || d.data[i+6] != '\\' || d.data[i+7] != 'u' {
						return "", false
					}
					r = utf16.DecodeRune(r, hex4(d.data[i+8:]))
					if r == unicode.ReplacementChar {
						return "", false
					}
					i += 6
				}
				b = utf8.AppendRune(b, r)
				i += 4
			default:
				return "", false
			}
			i += 2
		case c < 0x20:
			return "", false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && n == 1 {
				return "", false
			}
			b = append(b, d.data[i:i+n]...)
			i += n
		}
	}
	return "", false
}

// hex4 reads the four hex digits of a \u escape: -1 if s does not start
// with four.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// integer reads a number that is an integer, as its sign and magnitude. A
// fraction or an exponent fails it, even 1.0 or 1e2: encoding/json refuses
// them for the integer fields, the only numbers a spec has. So does a
// magnitude over 64 bits. A leading zero followed by digits is left for the
// caller to refuse at the next byte, as it is not a delimiter.
func (d *specDecoder) integer() (neg bool, mag uint64, ok bool) {
	i := d.i
	if i < len(d.data) && d.data[i] == '-' {
		neg = true
		i++
	}
	switch {
	case i >= len(d.data):
		return false, 0, false
	case d.data[i] == '0':
		i++
	case '1' <= d.data[i] && d.data[i] <= '9':
		for ; i < len(d.data) && '0' <= d.data[i] && d.data[i] <= '9'; i++ {
			digit := uint64(d.data[i] - '0')
			if mag > (1<<64-1-digit)/10 {
				return false, 0, false
			}
			mag = mag*10 + digit
		}
	default:
		return false, 0, false
	}
	if i < len(d.data) && (d.data[i] == '.' || d.data[i] == 'e' || d.data[i] == 'E') {
		return false, 0, false
	}
	d.i = i
	return neg, mag, true
}

// The value decoders below follow encoding/json: null leaves a string, a
// bool, a number or a struct as it is and sets a pointer, a slice or a map
// to nil; an empty array is an empty slice, not nil. They are called on
// fresh values only (a repeated key fails the object), so "as it is" is the
// zero value.

func decString[T ~string](d *specDecoder, p *T) bool {
	if d.null() {
		return true
	}
	v, ok := d.text()
	if !ok {
		return false
	}
	*p = T(v)
	return true
}

func decBool(d *specDecoder, p *bool) bool {
	switch {
	case d.null():
	case d.literal("true"):
		*p = true
	case d.literal("false"):
		*p = false
	default:
		return false
	}
	return true
}

// decUint stores an unsigned integer; a negative number (even -0, which
// strconv.ParseUint refuses) or one too big for T is left to
// encoding/json, which refuses it.
func decUint[T ~uint | ~uint32 | ~uint64](d *specDecoder, p *T) bool {
	if d.null() {
		return true
	}
	neg, mag, ok := d.integer()
	if !ok || neg {
		return false
	}
	v := T(mag)
	if uint64(v) != mag {
		return false
	}
	*p = v
	return true
}

// decInt stores a signed integer; -0 is 0, as strconv.ParseInt has it.
func decInt[T ~int | ~int64](d *specDecoder, p *T) bool {
	if d.null() {
		return true
	}
	neg, mag, ok := d.integer()
	if !ok {
		return false
	}
	var n int64
	switch {
	case neg && mag <= 1<<63:
		n = int64(-mag) // -(1<<63) wraps to itself: math.MinInt64
	case !neg && mag <= 1<<63-1:
		n = int64(mag)
	default:
		return false
	}
	v := T(n)
	if int64(v) != n {
		return false
	}
	*p = v
	return true
}

// decPtr stores a pointer to a new T that dec decodes, or nil for null.
func decPtr[T any](d *specDecoder, p **T, dec func(*specDecoder, *T) bool) bool {
	if d.null() {
		*p = nil
		return true
	}
	v := new(T)
	if !dec(d, v) {
		return false
	}
	*p = v
	return true
}

// decSlice stores an array, each element decoded by dec. A null element
// (which encoding/json stores as the zero value) is left to encoding/json.
func decSlice[T any](d *specDecoder, p *[]T, dec func(*specDecoder, *T) bool) bool {
	if d.null() {
		*p = nil
		return true
	}
	if !d.consume('[') {
		return false
	}
	s := []T{}
	d.ws()
	if !d.consume(']') {
		for {
			d.ws()
			if d.isNull() {
				return false
			}
			var zero T
			s = append(s, zero)
			if !dec(d, &s[len(s)-1]) {
				return false
			}
			if !d.more() {
				break
			}
		}
		if !d.consume(']') {
			return false
		}
	}
	*p = s
	return true
}

// decStringMap stores an object of strings. A key given twice is set
// twice, the last value winning, as encoding/json does for a map; a null
// value is left to encoding/json.
func decStringMap(d *specDecoder, p *map[string]string) bool {
	if d.null() {
		*p = nil
		return true
	}
	if !d.consume('{') {
		return false
	}
	m := map[string]string{}
	d.ws()
	if !d.consume('}') {
		for {
			d.ws()
			key, ok := d.text()
			if !ok {
				return false
			}
			d.ws()
			if !d.consume(':') {
				return false
			}
			d.ws()
			v, ok := d.text()
			if !ok {
				return false
			}
			m[key] = v
			if !d.more() {
				break
			}
		}
		if !d.consume('}') {
			return false
		}
	}
	*p = m
	return true
}

func decStrings[T ~string](d *specDecoder, p *[]T) bool {
	return decSlice(d, p, decString[T])
}

func decSpec(d *specDecoder, s *specs.Spec) bool {
	return d.object(func(key string) bool {
		switch key {
		case "ociVersion":
			return decString(d, &s.Version)
		case "process":
			return decPtr(d, &s.Process, decProcess)
		case "root":
			return decPtr(d, &s.Root, decRoot)
		case "hostname":
			return decString(d, &s.Hostname)
		case "domainname":
			return decString(d, &s.Domainname)
		case "mounts":
			return decSlice(d, &s.Mounts, decMount)
		case "hooks":
			return decPtr(d, &s.Hooks, decHooks)
		case "annotations":
			return decStringMap(d, &s.Annotations)
		case "linux":
			return decPtr(d, &s.Linux, decLinux)
		}
		return false
	})
}

func decProcess(d *specDecoder, p *specs.Process) bool {
	return d.object(func(key string) bool {
		switch key {
		case "terminal":
			return decBool(d, &p.Terminal)
		case "consoleSize":
			return decPtr(d, &p.ConsoleSize, decBox)
		case "user":
			return d.null() || decUser(d, &p.User)
		case "args":
			return decStrings(d, &p.Args)
		case "commandLine":
			return decString(d, &p.CommandLine)
		case "env":
			return decStrings(d, &p.Env)
		case "cwd":
			return decString(d, &p.Cwd)
		case "capabilities":
			return decPtr(d, &p.Capabilities, decCapabilities)
		case "rlimits":
			return decSlice(d, &p.Rlimits, decRlimit)
		case "noNewPrivileges":
			return decBool(d, &p.NoNewPrivileges)
		case "apparmorProfile":
			return decString(d, &p.ApparmorProfile)
		case "oomScoreAdj":
			return decPtr(d, &p.OOMScoreAdj, decInt[int])
		case "selinuxLabel":
			return decString(d, &p.SelinuxLabel)
		}
		return false
	})
}

func decBox(d *specDecoder, b *specs.Box) bool {
	return d.object(func(key string) bool {
		switch key {
		case "height":
			return decUint(d, &b.Height)
		case "width":
			return decUint(d, &b.Width)
		}
		return false
	})
}

func decUser(d *specDecoder, u *specs.User) bool {
	return d.object(func(key string) bool {
		switch key {
		case "uid":
			return decUint(d, &u.UID)
		case "gid":
			return decUint(d, &u.GID)
		case "umask":
			return decPtr(d, &u.Umask, decUint[uint32])
		case "additionalGids":
			return decSlice(d, &u.AdditionalGids, decUint[uint32])
		case "username":
			return decString(d, &u.Username)
		}
		return false
	})
}

func decCapabilities(d *specDecoder, c *specs.LinuxCapabilities) bool {
	return d.object(func(key string) bool {
		switch key {
		case "bounding":
			return decStrings(d, &c.Bounding)
		case "effective":
			return decStrings(d, &c.Effective)
		case "inheritable":
			return decStrings(d, &c.Inheritable)
		case "permitted":
			return decStrings(d, &c.Permitted)
		case "ambient":
			return decStrings(d, &c.Ambient)
		}
		return false
	})
}

func decRlimit(d *specDecoder, r *specs.POSIXRlimit) bool {
	return d.object(func(key string) bool {
		switch key {
		case "type":
			return decString(d, &r.Type)
		case "hard":
			return decUint(d, &r.Hard)
		case "soft":
			return decUint(d, &r.Soft)
		}
		return false
	})
}

func decRoot(d *specDecoder, r *specs.Root) bool {
	return d.object(func(key string) bool {
		switch key {
		case "path":
			return decString(d, &r.Path)
		case "readonly":
			return decBool(d, &r.Readonly)
		}
		return false
	})
}

func decMount(d *specDecoder, m *specs.Mount) bool {
	return d.object(func(key string) bool {
		switch key {
		case "destination":
			return decString(d, &m.Destination)
		case "type":
			return decString(d, &m.Type)
		case "source":
			return decString(d, &m.Source)
		case "options":
			return decStrings(d, &m.Options)
		case "uidMappings":
			return decSlice(d, &m.UIDMappings, decIDMapping)
		case "gidMappings":
			return decSlice(d, &m.GIDMappings, decIDMapping)
		}
		return false
	})
}

func decIDMapping(d *specDecoder, m *specs.LinuxIDMapping) bool {
	return d.object(func(key string) bool {
		switch key {
		case "containerID":
			return decUint(d, &m.ContainerID)
		case "hostID":
			return decUint(d, &m.HostID)
		case "size":
			return decUint(d, &m.Size)
		}
		return false
	})
}

func decHooks(d *specDecoder, h *specs.Hooks) bool {
	return d.object(func(key string) bool {
		switch key {
		case "prestart":
			return decSlice(d, &h.Prestart, decHook) //nolint:staticcheck // Prestart: deprecated, still supported
		case "createRuntime":
			return decSlice(d, &h.CreateRuntime, decHook)
		case "createContainer":
			return decSlice(d, &h.CreateContainer, decHook)
		case "startContainer":
			return decSlice(d, &h.StartContainer, decHook)
		case "poststart":
			return decSlice(d, &h.Poststart, decHook)
		case "poststop":
			return decSlice(d, &h.Poststop, decHook)
		}
		return false
	})
}

func decHook(d *specDecoder, h *specs.Hook) bool {
	return d.object(func(key string) bool {
		switch key {
		case "path":
			return decString(d, &h.Path)
		case "args":
			return decStrings(d, &h.Args)
		case "env":
			return decStrings(d, &h.Env)
		case "timeout":
			return decPtr(d, &h.Timeout, decInt[int])
		}
		return false
	})
}

func decLinux(d *specDecoder, l *specs.Linux) bool {
	return d.object(func(key string) bool {
		switch key {
		case "uidMappings":
			return decSlice(d, &l.UIDMappings, decIDMapping)
		case "gidMappings":
			return decSlice(d, &l.GIDMappings, decIDMapping)
		case "sysctl":
			return decStringMap(d, &l.Sysctl)
		case "resources":
			return decPtr(d, &l.Resources, decResources)
		case "cgroupsPath":
			return decString(d, &l.CgroupsPath)
		case "namespaces":
			return decSlice(d, &l.Namespaces, decNamespace)
		case "devices":
			return decSlice(d, &l.Devices, decDevice)
		case "seccomp":
			return decPtr(d, &l.Seccomp, decSeccomp)
		case "rootfsPropagation":
			return decString(d, &l.RootfsPropagation)
		case "maskedPaths":
			return decStrings(d, &l.MaskedPaths)
		case "readonlyPaths":
			return decStrings(d, &l.ReadonlyPaths)
		case "mountLabel":
			return decString(d, &l.MountLabel)
		}
		return false
	})
}

func decResources(d *specDecoder, r *specs.LinuxResources) bool {
	return d.object(func(key string) bool {
		switch key {
		case "devices":
			return decSlice(d, &r.Devices, decDeviceCgroup)
		case "memory":
			return decPtr(d, &r.Memory, decMemory)
		case "cpu":
			return decPtr(d, &r.CPU, decCPU)
		case "pids":
			return decPtr(d, &r.Pids, decPids)
		case "unified":
			return decStringMap(d, &r.Unified)
		}
		return false
	})
}

func decDeviceCgroup(d *specDecoder, c *specs.LinuxDeviceCgroup) bool {
	return d.object(func(key string) bool {
		switch key {
		case "allow":
			return decBool(d, &c.Allow)
		case "type":
			return decString(d, &c.Type)
		case "major":
			return decPtr(d, &c.Major, decInt[int64])
		case "minor":
			return decPtr(d, &c.Minor, decInt[int64])
		case "access":
			return decString(d, &c.Access)
		}
		return false
	})
}

func decMemory(d *specDecoder, m *specs.LinuxMemory) bool {
	return d.object(func(key string) bool {
		switch key {
		case "limit":
			return decPtr(d, &m.Limit, decInt[int64])
		case "reservation":
			return decPtr(d, &m.Reservation, decInt[int64])
		case "swap":
			return decPtr(d, &m.Swap, decInt[int64])
		case "kernel":
			return decPtr(d, &m.Kernel, decInt[int64])
		case "kernelTCP":
			return decPtr(d, &m.KernelTCP, decInt[int64])
		case "swappiness":
			return decPtr(d, &m.Swappiness, decUint[uint64])
		case "disableOOMKiller":
			return decPtr(d, &m.DisableOOMKiller, decBool)
		case "useHierarchy":
			return decPtr(d, &m.UseHierarchy, decBool)
		case "checkBeforeUpdate":
			return decPtr(d, &m.CheckBeforeUpdate, decBool)
		}
		return false
	})
}

func decCPU(d *specDecoder, c *specs.LinuxCPU) bool {
	return d.object(func(key string) bool {
		switch key {
		case "shares":
			return decPtr(d, &c.Shares, decUint[uint64])
		case "quota":
			return decPtr(d, &c.Quota, decInt[int64])
		case "burst":
			return decPtr(d, &c.Burst, decUint[uint64])
		case "period":
			return decPtr(d, &c.Period, decUint[uint64])
		case "realtimeRuntime":
			return decPtr(d, &c.RealtimeRuntime, decInt[int64])
		case "realtimePeriod":
			return decPtr(d, &c.RealtimePeriod, decUint[uint64])
		case "cpus":
			return decString(d, &c.Cpus)
		case "mems":
			return decString(d, &c.Mems)
		case "idle":
			return decPtr(d, &c.Idle, decInt[int64])
		}
		return false
	})
}

func decPids(d *specDecoder, p *specs.LinuxPids) bool {
	return d.object(func(key string) bool {
		switch key {
		case "limit":
			return decPtr(d, &p.Limit, decInt[int64])
		}
		return false
	})
}

func decNamespace(d *specDecoder, n *specs.LinuxNamespace) bool {
	return d.object(func(key string) bool {
		switch key {
		case "type":
			return decString(d, &n.Type)
		case "path":
			return decString(d, &n.Path)
		}
		return false
	})
}

func decDevice(d *specDecoder, v *specs.LinuxDevice) bool {
	return d.object(func(key string) bool {
		switch key {
		case "path":
			return decString(d, &v.Path)
		case "type":
			return decString(d, &v.Type)
		case "major":
			return decInt(d, &v.Major)
		case "minor":
			return decInt(d, &v.Minor)
		case "fileMode":
			return decPtr(d, &v.FileMode, decUint[os.FileMode])
		case "uid":
			return decPtr(d, &v.UID, decUint[uint32])
		case "gid":
			return decPtr(d, &v.GID, decUint[uint32])
		}
		return false
	})
}

func decSeccomp(d *specDecoder, s *specs.LinuxSeccomp) bool {
	return d.object(func(key string) bool {
		switch key {
		case "defaultAction":
			return decString(d, &s.DefaultAction)
		case "defaultErrnoRet":
			return decPtr(d, &s.DefaultErrnoRet, decUint[uint])
		case "architectures":
			return decStrings(d, &s.Architectures)
		case "flags":
			return decStrings(d, &s.Flags)
		case "listenerPath":
			return decString(d, &s.ListenerPath)
		case "listenerMetadata":
			return decString(d, &s.ListenerMetadata)
		case "syscalls":
			return decSlice(d, &s.Syscalls, decSyscall)
		}
		return false
	})
}

func decSyscall(d *specDecoder, s *specs.LinuxSyscall) bool {
	return d.object(func(key string) bool {
		switch key {
		case "names":
			return decStrings(d, &s.Names)
		case "action":
			return decString(d, &s.Action)
		case "errnoRet":
			return decPtr(d, &s.ErrnoRet, decUint[uint])
		case "args":
			return decSlice(d, &s.Args, decSeccompArg)
		}
		return false
	})
}

func decSeccompArg(d *specDecoder, a *specs.LinuxSeccompArg) bool {
	return d.object(func(key string) bool {
		switch key {
		case "index":
			return decUint(d, &a.Index)
		case "value":
			return decUint(d, &a.Value)
		case "valueTwo":
			return decUint(d, &a.ValueTwo)
		case "op":
			return decString(d, &a.Op)
		}
		return false
	})
}
