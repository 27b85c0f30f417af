package desired

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseOptions adjust the checks Parse makes against the host.
type ParseOptions struct {
	// SkipHostChecks leaves out the checks that look at this host's
	// filesystem (root.path and bind mount sources exist): for validating
	// in CI, away from the host that will run the manifests.
	SkipHostChecks bool
	// Stat replaces os.Stat for the host checks (tests).
	Stat func(name string) (fs.FileInfo, error)
	// Lstat replaces os.Lstat for the host checks (tests).
	Lstat func(name string) (fs.FileInfo, error)
}

// maxNodes bounds the YAML nodes one document may expand to (aliases
// included), against "billion laughs" documents.
const maxNodes = 100000

// Parse parses and validates one manifest file. name is used in error
// messages only. It returns either the file's containers, in document
// order, with Spec, Hash and Manifest filled and Source left empty, or the
// file's errors (every one found, in file order).
//
// Parse reads nothing but data, except for the host checks (see
// ParseOptions).
func Parse(name string, data []byte, opts ParseOptions) ([]*Container, []*Error) {
	el := &errorList{file: name}
	if len(data) > MaxFileSize {
		el.add(0, "", "file is %d bytes, larger than the limit of %d (1 MiB); split it", len(data), MaxFileSize)
		return nil, el.errs
	}
	if opts.Stat == nil {
		opts.Stat = os.Stat
	}
	if opts.Lstat == nil {
		opts.Lstat = os.Lstat
	}
	var out []*Container
	dec := yaml.NewDecoder(bytes.NewReader(data))
	names := map[string]int{} // name → line of its first definition
	aliases := &aliasMeter{}  // for the whole file: documents share the bound
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == io.EOF {
			break
		}
		if err != nil {
			line, msg := yamlErrorLine(err)
			el.add(line, "", "%s", msg)
			break
		}
		root := &n
		if root.Kind == yaml.DocumentNode {
			if len(root.Content) == 0 {
				continue
			}
			root = root.Content[0]
		}
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			continue // an empty document ("---" alone, or only comments)
		}
		if a, at := aliases.scan(root); a != nil {
			el.add(a.Line, at, "alias *%s takes the text reached through aliases in this file beyond %d bytes (4 times the 1 MiB file limit); repeat less through aliases, or write the values out", a.Value, maxAliasBytes)
			break // the bound is the file's: later documents cannot be read within it
		}
		p := &parser{el: el, opts: opts, budget: maxNodes}
		before := len(el.errs)
		m := p.manifest(root)
		if m == nil || len(el.errs) > before {
			continue
		}
		if first, dup := names[m.Metadata.Name]; dup {
			el.add(p.nameLine, "metadata.name", "%q is defined twice in this file (first on line %d); names must be unique", m.Metadata.Name, first)
			continue
		}
		names[m.Metadata.Name] = p.nameLine
		c, oerr := convert(m)
		if oerr != nil {
			line, field := p.ociLocate(oerr.path)
			el.add(line, field, "%s", oerr.msg)
			continue
		}
		c.Doc = doc
		c.Line = p.nameLine
		c.AfterLines = p.afterLines
		out = append(out, c)
	}
	if len(el.errs) > 0 {
		sort.SliceStable(el.errs, func(i, j int) bool { return el.errs[i].Line < el.errs[j].Line })
		return nil, el.errs
	}
	return out, nil
}

// convert builds the container from a validated manifest.
func convert(m *Manifest) (*Container, *ociError) {
	var img *ImageInfo
	if m.Spec.Image != "" {
		img = &provisionalImage
	}
	s := buildSpec(m, img)
	if len(m.Spec.OCI) > 0 {
		merged, err := applyOCI(s, m.Spec.OCI)
		if err != nil {
			return nil, err
		}
		s = merged
	}
	hash, base := hashes(s, m, "")
	recursiveBinds(s, m)
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	c := &Container{
		Name:        m.Metadata.Name,
		Labels:      m.Metadata.Labels,
		Spec:        s,
		Hash:        hash,
		BaseHash:    base,
		Restart:     m.Spec.Restart,
		StopSignal:  m.Spec.Stop.Signal,
		StopTimeout: m.Spec.Stop.Timeout,
		Runtime:     m.Spec.Runtime,
		Image:       m.Spec.Image,
		PullPolicy:  m.Spec.ImagePullPolicy,
		Manifest:    m,
	}
	if c.Image != "" {
		// Provisional until WithImage: nothing may be created from it,
		// and no recorded hash can equal it.
		c.Hash, c.BaseHash = "", ""
		c.ImageWait = "image " + c.Image + " not resolved yet"
	} else {
		s.Annotations[AnnotationSpecHash] = hash
	}
	return c, nil
}

// yamlErrorLine splits "yaml: line 3: did not find expected key" into 3 and
// the message. yaml.v3 reports parser errors (as opposed to scanner
// errors) with a 0-based line ("line 1" for the second line, no line for
// the first); those all start with "did not find expected", and are moved
// down by one here.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if l, m, ok := cutYAMLLine(err.Error()); ok {
		line, _ = strconv.Atoi(l)
		msg = m
	}
	if strings.HasPrefix(msg, "did not find expected") {
		line++
	}
	return line, "invalid YAML: " + msg
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
