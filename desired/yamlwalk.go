package desired

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxAliasBytes bounds the scalar text (keys and values) that one file
// reaches through aliases, counted once per alias with the aliases inside
// the aliased node expanded in turn: 4 times MaxFileSize. maxNodes bounds
// nodes, not bytes: a file of 109 KB that repeats one 100 KB string
// through 3,000 aliases stays under it, and expands to 300 MB, copied
// several times over by the spec generation.
const maxAliasBytes = 4 * MaxFileSize

// aliasMeter counts the text a file reaches through aliases (see
// maxAliasBytes) as its node trees are walked in document order, without
// expanding anything: the expanded size of each anchored node is measured
// once, so the count costs a walk of the nodes as written.
type aliasMeter struct {
	spent int64                // bytes reached through aliases so far
	size  map[*yaml.Node]int64 // anchored nodes: expanded size; -1 while measured
}

// aliasCap is a size beyond the bound: measuring stops there.
const aliasCap = maxAliasBytes + 1

// scan walks the document root and returns the alias with which the file
// passes maxAliasBytes and the field it is the value (or key) of, or nil.
func (m *aliasMeter) scan(root *yaml.Node) (*yaml.Node, string) {
	type step struct {
		key string
		idx int // -1 for a mapping key
	}
	var path []step
	var walk func(n *yaml.Node) *yaml.Node
	walk = func(n *yaml.Node) *yaml.Node {
		switch n.Kind {
		case yaml.AliasNode:
			if m.spent += m.expanded(n); m.spent > maxAliasBytes {
				return n
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if a := walk(k); a != nil {
					return a
				}
				path = append(path, step{key: k.Value, idx: -1})
				if a := walk(n.Content[i+1]); a != nil {
					return a
				}
				path = path[:len(path)-1]
			}
		default:
			for i, c := range n.Content {
				if n.Kind == yaml.SequenceNode {
					path = append(path, step{idx: i})
				}
				if a := walk(c); a != nil {
					return a
				}
				if n.Kind == yaml.SequenceNode {
					path = path[:len(path)-1]
				}
			}
		}
		return nil
	}
	a := walk(root)
	if a == nil {
		return nil, ""
	}
	var b strings.Builder
	for _, s := range path {
		if s.idx >= 0 {
			fmt.Fprintf(&b, "[%d]", s.idx)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return a, b.String()
}

// expanded returns the scalar bytes of n with every alias in it expanded,
// at most aliasCap (a node that contains itself is endless).
func (m *aliasMeter) expanded(n *yaml.Node) int64 {
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return 0
		}
		return m.expanded(n.Alias)
	case yaml.ScalarNode:
		return int64(len(n.Value))
	}
	if n.Anchor != "" {
		if s, ok := m.size[n]; ok {
			if s < 0 {
				return aliasCap
			}
			return s
		}
		if m.size == nil {
			m.size = map[*yaml.Node]int64{}
		}
		m.size[n] = -1
	}
	var s int64
	for _, c := range n.Content {
		if s += m.expanded(c); s >= aliasCap {
			s = aliasCap
			break
		}
	}
	if n.Anchor != "" {
		m.size[n] = s
	}
	return s
}

// parser walks one document's node tree. Every check reports the line of
// the node at fault.
type parser struct {
	el       *errorList
	opts     ParseOptions
	budget   int
	nameLine int
	ociNode  *yaml.Node // the value of spec.oci
	ociLine  int        // the line of the oci key
	// afterLines are the lines of spec.after's names (Container.AfterLines).
	afterLines []int
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.el.add(line, field, format, args...)
}

// deref follows aliases and spends the node budget.
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	p.budget--
	return n
}

type field struct {
	key, val *yaml.Node
}

// mapping checks that n is a mapping whose keys are all in known, each at
// most once, and returns its fields by key.
func (p *parser) mapping(n *yaml.Node, at string, known ...string) (map[string]field, bool) {
	n = p.deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, at, "must be a mapping (key: value), not %s", describe(n))
		return nil, false
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := p.deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, at, "keys must be plain strings")
			continue
		}
		key := k.Value
		if known != nil && !contains(known, key) {
			p.errorf(k, join(at, key), "unknown field %q%s (valid: %s)", key, suggest(key, known), strings.Join(known, ", "))
			continue
		}
		if prev, dup := out[key]; dup {
			p.errorf(k, join(at, key), "given twice (first on line %d)", prev.key.Line)
			continue
		}
		out[key] = field{k, v}
	}
	return out, true
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns `; did you mean "command"?` for a near miss, "" otherwise.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf("; did you mean %q?", k)
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 100
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		}
		return n.Value
	}
	return "an alias"
}

// str reads a scalar as a string. Numbers and booleans are taken as
// written (PORT: 8080 is "8080"); null and custom tags are refused.
func (p *parser) str(n *yaml.Node, at string) (string, bool) {
	n = p.deref(n)
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, at, "must be a string, not %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
	case "!!null":
		p.errorf(n, at, "must be a string, not null")
		return "", false
	default:
		p.errorf(n, at, "unsupported tag %s", n.Tag)
		return "", false
	}
	if strings.IndexByte(n.Value, 0) >= 0 {
		p.errorf(n, at, "must not contain a NUL character")
		return "", false
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, at string) (bool, bool) {
	n = p.deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, true
		}
	}
	p.errorf(n, at, "must be true or false, not %s", describe(n))
	return false, false
}

func (p *parser) strList(n *yaml.Node, at string) ([]string, []*yaml.Node, bool) {
	n = p.deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, at, "must be a list, not %s", describe(n))
		return nil, nil, false
	}
	out := make([]string, 0, len(n.Content))
	nodes := make([]*yaml.Node, 0, len(n.Content))
	ok := true
	for i, e := range n.Content {
		s, good := p.str(e, fmt.Sprintf("%s[%d]", at, i))
		ok = ok && good
		out = append(out, s)
		nodes = append(nodes, p.deref(e))
	}
	return out, nodes, ok
}

// absPath checks an absolute path and returns it cleaned.
func (p *parser) absPath(n *yaml.Node, at string) (string, bool) {
	v, ok := p.str(n, at)
	if !ok {
		return "", false
	}
	if !path.IsAbs(v) {
		p.errorf(p.deref(n), at, "%q is not an absolute path (use e.g. /%s)", v, strings.TrimLeft(v, "./"))
		return "", false
	}
	return path.Clean(v), true
}

func nodes0(parent *yaml.Node, nodes []*yaml.Node) *yaml.Node {
	if len(nodes) > 0 {
		return nodes[0]
	}
	return parent
}

// toJSON converts a YAML subtree into JSON-compatible values: objects with
// string keys, arrays, json.Number, strings, booleans and null.
func (p *parser) toJSON(n *yaml.Node, at string) (any, bool) {
	n = p.deref(n)
	if p.budget < 0 {
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		mf, ok := p.mapping(n, at)
		if !ok {
			return nil, false
		}
		obj := make(map[string]any, len(mf))
		good := true
		for k, f := range mf {
			v, ok := p.toJSON(f.val, join(at, k))
			good = good && ok
			obj[k] = v
		}
		return obj, good
	case yaml.SequenceNode:
		arr := make([]any, 0, len(n.Content))
		good := true
		for i, e := range n.Content {
			v, ok := p.toJSON(e, fmt.Sprintf("%s[%d]", at, i))
			good = good && ok
			arr = append(arr, v)
		}
		return arr, good
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				p.errorf(n, at, "%v", err)
				return nil, false
			}
			return b, true
		case "!!int", "!!float":
			var f float64
			if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				p.errorf(n, at, "%q is not a number JSON can hold", n.Value)
				return nil, false
			}
			var i int64
			if n.ShortTag() == "!!int" && n.Decode(&i) == nil {
				return json.Number(strconv.FormatInt(i, 10)), true
			}
			var u uint64
			if n.ShortTag() == "!!int" && n.Decode(&u) == nil {
				return json.Number(strconv.FormatUint(u, 10)), true
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
		case "!!str", "!!timestamp":
			return n.Value, true
		default:
			p.errorf(n, at, "unsupported tag %s", n.Tag)
			return nil, false
		}
	}
	p.errorf(n, at, "unsupported YAML node")
	return nil, false
}
