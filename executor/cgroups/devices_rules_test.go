package cgroups

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// runProgram interprets an encoded device program, the subset of eBPF
// that program emits, for one access: an independent reading of the bytes
// the kernel gets (encoding included). It fails the test on anything else.
func runProgram(t *testing.T, code []byte, typ byte, major, minor, access uint32) bool {
	t.Helper()
	devType := uint32(unix.BPF_DEVCG_DEV_CHAR)
	if typ == 'b' {
		devType = unix.BPF_DEVCG_DEV_BLOCK
	}
	ctx := make([]byte, 12)
	binary.NativeEndian.PutUint32(ctx[0:], access<<16|devType)
	binary.NativeEndian.PutUint32(ctx[4:], major)
	binary.NativeEndian.PutUint32(ctx[8:], minor)
	little := binary.NativeEndian.Uint16([]byte{1, 0}) == 1
	var reg [11]uint64
	for pc := 0; ; {
		if pc < 0 || (pc+1)*insnBytes > len(code) {
			t.Fatalf("pc %d out of the program (%d instructions)", pc, len(code)/insnBytes)
		}
		b := code[pc*insnBytes:]
		op := b[0]
		dst, src := b[1]&0xf, b[1]>>4
		if !little {
			dst, src = b[1]>>4, b[1]&0xf
		}
		off := int16(binary.NativeEndian.Uint16(b[2:]))
		imm := int32(binary.NativeEndian.Uint32(b[4:]))
		if dst > 10 || src > 10 {
			t.Fatalf("pc %d: bad register", pc)
		}
		// The verifier refuses reserved fields that are not zero.
		switch op {
		case opLdxW:
			if imm != 0 {
				t.Fatalf("pc %d: load with imm %d", pc, imm)
			}
		case opAnd32K, opRsh32K, opMov32K:
			if off != 0 || src != 0 {
				t.Fatalf("pc %d: ALU K with off %d src %d", pc, off, src)
			}
		case opMov32X:
			if off != 0 || imm != 0 {
				t.Fatalf("pc %d: ALU X with off %d imm %d", pc, off, imm)
			}
		case opJeqK, opJneK:
			if src != 0 {
				t.Fatalf("pc %d: jump K with src %d", pc, src)
			}
		case opJneX:
			if imm != 0 {
				t.Fatalf("pc %d: jump X with imm %d", pc, imm)
			}
		case opExit:
			if off != 0 || imm != 0 || src != 0 || dst != 0 {
				t.Fatalf("pc %d: exit with operands", pc)
			}
		}
		pc++
		jump := func(cond bool) {
			if cond {
				pc += int(off)
			}
		}
		switch op {
		case opLdxW:
			if src != 1 || off < 0 || int(off)+4 > len(ctx) || off%4 != 0 {
				t.Fatalf("pc %d: load from r%d%+d", pc-1, src, off)
			}
			reg[dst] = uint64(binary.NativeEndian.Uint32(ctx[off:]))
		case opAnd32K:
			reg[dst] = uint64(uint32(reg[dst]) & uint32(imm))
		case opRsh32K:
			reg[dst] = uint64(uint32(reg[dst]) >> uint32(imm))
		case opMov32X:
			reg[dst] = uint64(uint32(reg[src]))
		case opMov32K:
			reg[dst] = uint64(uint32(imm))
		case opJeqK:
			jump(reg[dst] == uint64(int64(imm)))
		case opJneK:
			jump(reg[dst] != uint64(int64(imm)))
		case opJneX:
			jump(reg[dst] != reg[src])
		case opExit:
			if reg[0] > 1 {
				t.Fatalf("program returned %d", reg[0])
			}
			return reg[0] == 1
		default:
			t.Fatalf("pc %d: opcode %#x not expected", pc-1, op)
		}
		if off < 0 {
			t.Fatalf("pc %d: backward jump", pc-1)
		}
	}
}

func dev(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	d := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
	if major != -2 {
		d.Major = &major
	}
	if minor != -2 {
		d.Minor = &minor
	}
	return d
}

// query is one access to decide: "c 1:3 rw".
type query struct {
	typ          byte
	major, minor uint32
	access       uint32
}

func parseQuery(t *testing.T, s string) query {
	t.Helper()
	var q query
	var typ, acc string
	if _, err := fmt.Sscanf(s, "%s %d:%d %s", &typ, &q.major, &q.minor, &acc); err != nil {
		t.Fatalf("query %q: %v", s, err)
	}
	q.typ = typ[0]
	q.access = accessBits(acc)
	return q
}

// The decisions, written out by hand: v1's meaning of the rules (runc's
// too), checked on the filter and on the program's bytes.
func TestDeviceRulesDecisions(t *testing.T) {
	denyAll := dev(false, "a", -2, -2, "rwm")
	allowAll := dev(true, "", -1, -1, "")
	for _, c := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
		allow []string
		deny  []string
	}{
		{
			name:  "no rules: deny all",
			rules: nil,
			deny:  []string{"c 1:3 r", "b 7:0 m"},
		},
		{
			name: "runc's defaults under deny-all",
			rules: []specs.LinuxDeviceCgroup{
				denyAll,
				dev(true, "c", -1, -1, "m"), dev(true, "b", -2, -2, "m"),
				dev(true, "c", 1, 3, "rwm"), dev(true, "c", 136, -1, "rwm"), dev(true, "c", 5, 2, "rwm"),
			},
			allow: []string{"c 1:3 rw", "c 1:3 m", "c 136:0 rw", "c 136:99 r", "c 5:2 rw", "b 7:0 m", "c 1:11 m"},
			deny:  []string{"b 7:0 r", "b 7:0 rw", "c 1:11 w", "c 1:5 r", "c 5:1 rw", "b 1:3 r", "c 137:0 r"},
		},
		{
			name:  "access must be covered by one exception",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, -1, "r"), dev(true, "c", 1, 5, "w")},
			allow: []string{"c 1:5 r", "c 1:5 w", "c 1:9 r"},
			deny:  []string{"c 1:5 rw", "c 1:9 w"},
		},
		{
			name:  "merged access",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 5, "r"), dev(true, "c", 1, 5, "w")},
			allow: []string{"c 1:5 rw"},
		},
		{
			name:  "deny takes access away from the same device",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm"), dev(false, "c", 1, 3, "w")},
			allow: []string{"c 1:3 r", "c 1:3 m"},
			deny:  []string{"c 1:3 w", "c 1:3 rw"},
		},
		{
			name:  "last reset wins",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm"), allowAll, denyAll, dev(true, "c", 1, 5, "r")},
			allow: []string{"c 1:5 r"},
			deny:  []string{"c 1:3 r", "b 8:0 r"},
		},
		{
			name:  "type a resets whatever its numbers",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "a", 8, 0, "r")},
			allow: []string{"c 1:3 rwm", "b 7:0 rw"},
		},
		{
			name:  "deny list: any bit asked for that is denied denies",
			rules: []specs.LinuxDeviceCgroup{allowAll, dev(false, "b", 7, -1, "w"), dev(false, "c", 1, 11, "rwm")},
			allow: []string{"b 7:0 r", "b 7:0 m", "b 8:0 rw", "c 1:3 rw"},
			deny:  []string{"b 7:0 w", "b 7:3 rw", "c 1:11 r", "c 1:11 m"},
		},
		{
			name:  "deny list: allow takes a deny away",
			rules: []specs.LinuxDeviceCgroup{allowAll, dev(false, "c", 1, 11, "rwm"), dev(true, "c", 1, 11, "r")},
			allow: []string{"c 1:11 r"},
			deny:  []string{"c 1:11 w", "c 1:11 rw"},
		},
		{
			name:  "an explicit deny-all after allows denies everything",
			rules: []specs.LinuxDeviceCgroup{dev(true, "c", 1, 11, "rwm"), denyAll},
			deny:  []string{"c 1:11 w", "c 1:3 r"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := compileDeviceRules(c.rules)
			if err != nil {
				t.Fatal(err)
			}
			code := encodeProgram(f.program())
			for _, want := range []bool{true, false} {
				list := c.deny
				if want {
					list = c.allow
				}
				for _, s := range list {
					q := parseQuery(t, s)
					if got := f.allows(q.typ, q.major, q.minor, q.access); got != want {
						t.Errorf("filter: %s allowed=%v, want %v", s, got, want)
					}
					if got := runProgram(t, code, q.typ, q.major, q.minor, q.access); got != want {
						t.Errorf("program: %s allowed=%v, want %v", s, got, want)
					}
				}
			}
		})
	}
}

func TestDeviceRulesErrors(t *testing.T) {
	denyAll := dev(false, "a", -2, -2, "rwm")
	for _, c := range []struct {
		rules []specs.LinuxDeviceCgroup
		err   string
	}{
		{[]specs.LinuxDeviceCgroup{denyAll, dev(true, "p", -1, -1, "rwm")}, `linux.resources.devices[1]: invalid type "p" (want a, b or c)`},
		{[]specs.LinuxDeviceCgroup{dev(true, "c", 1<<31, 3, "r")}, "linux.resources.devices[0]: major 2147483648 is out of range"},
		{[]specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, -1, "rw"), dev(false, "c", 1, 3, "w")}, "linux.resources.devices[2]: cannot deny c 1:3 w: an earlier rule allows c 1:* rw"},
		{[]specs.LinuxDeviceCgroup{denyAll, dev(true, "b", -1, -1, "m"), dev(false, "b", 7, 0, "rwm")}, "cannot deny b 7:0 rwm: an earlier rule allows b *:* m"},
		{[]specs.LinuxDeviceCgroup{dev(true, "a", -1, -1, ""), dev(false, "c", -1, 3, "r"), dev(true, "c", 1, 3, "rw")}, "cannot allow c 1:3 rw: an earlier rule denies c *:3 r"},
	} {
		_, err := compileDeviceRules(c.rules)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v: error %v, want %q", c.rules, err, c.err)
		}
	}
	// Access letters runc does not know are ignored, as runc ignores them
	// (its own update.bats denies "rwa"): "rwx" allows rw, "wa" takes w
	// away, "a" alone does nothing.
	f, err := compileDeviceRules([]specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwx"), dev(false, "c", 1, 3, "wa"), dev(true, "c", 1, 5, "a")})
	if err != nil {
		t.Fatalf("access letters beyond rwm: %v", err)
	}
	for _, q := range []struct {
		s    string
		want bool
	}{{"c 1:3 r", true}, {"c 1:3 w", false}, {"c 1:3 m", false}, {"c 1:5 r", false}} {
		qq := parseQuery(t, q.s)
		if got := f.allows(qq.typ, qq.major, qq.minor, qq.access); got != q.want {
			t.Errorf("rules with unknown access letters: %s allowed=%v, want %v", q.s, got, q.want)
		}
	}
	// Taking away what the wildcard does not hold is fine.
	if _, err := compileDeviceRules([]specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, -1, "r"), dev(false, "c", 1, 3, "w")}); err != nil {
		t.Errorf("deny of an access the wildcard lacks: %v", err)
	}
}

// randomRules makes rule lists over a small space of devices, so that
// rules overlap often.
func randomRules(rng *rand.Rand) []specs.LinuxDeviceCgroup {
	n := rng.Intn(8)
	var rules []specs.LinuxDeviceCgroup
	nums := []int64{-1, 1, 2}
	for i := 0; i < n; i++ {
		typ := []string{"a", "b", "c", "c", "b", "c"}[rng.Intn(6)]
		var acc string
		for acc == "" {
			for _, c := range "rwm" {
				if rng.Intn(2) == 0 {
					acc += string(c)
				}
			}
		}
		rules = append(rules, dev(rng.Intn(2) == 0, typ, nums[rng.Intn(3)], nums[rng.Intn(3)], acc))
	}
	return rules
}

// The program decides as the filter does, for random rule lists and every
// access in their space.
func TestDeviceProgramMatchesFilter(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	checked := 0
	for i := 0; i < 3000; i++ {
		rules := randomRules(rng)
		f, err := compileDeviceRules(rules)
		if err != nil {
			continue // a hole in a wildcard
		}
		checked++
		code := encodeProgram(f.program())
		for _, typ := range []byte{'b', 'c'} {
			for _, major := range []uint32{1, 2, 3} {
				for _, minor := range []uint32{1, 2, 3} {
					for access := uint32(1); access <= accAll; access++ {
						want := f.allows(typ, major, minor, access)
						if got := runProgram(t, code, typ, major, minor, access); got != want {
							t.Fatalf("rules %v: %c %d:%d %s: program %v, filter %v", rules, typ, major, minor, accessString(access), got, want)
						}
					}
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d rule lists compiled", checked)
	}
}
