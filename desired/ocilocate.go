package desired

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ociLocate finds the line of a JSON path inside the oci fragment, falling
// back to the nearest node that exists (a field the fragment did not set
// was made invalid by the merge as a whole, so the oci key is blamed).
func (p *parser) ociLocate(jpath []string) (int, string) {
	field := "spec.oci"
	line := p.ociLine
	n := p.ociNode
	for _, k := range jpath {
		if strings.HasPrefix(k, "[") {
			field += k
		} else {
			field += "." + k
		}
		if n == nil {
			continue
		}
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if p.deref(n.Content[i]).Value == k {
					next = p.deref(n.Content[i+1])
					line = n.Content[i].Line
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(strings.Trim(k, "[]")); err == nil && idx >= 0 && idx < len(n.Content) {
				next = p.deref(n.Content[idx])
				line = next.Line
			}
		}
		n = next
	}
	if len(jpath) == 0 {
		field = "spec.oci"
	}
	return line, field
}
