package desired

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// checkAfter is the directory-wide check of spec.after, run by Next once
// the names are unique: a container parsed now (its name in parsed) must
// wait only for containers the directory defines, for healthy only on one
// with a probe, and not in a cycle. A file with such an error applies
// nothing, as for any other error, and the error names the files and lines
// involved. It says whether it changed anything (a file fell back to its
// last good definitions, which may expose another conflict).
//
// A container whose file did not change is not checked again: when the
// container it waits for goes away with its own file, the planner shows it
// waiting ("waiting for db: not defined") instead of refusing a file that
// nobody touched.
func checkAfter(cands []*cand, files []File, parsed map[string]bool, contribution func(*cand) []*Container) bool {
	found := false
	for _, c := range cands {
		if !c.useFresh {
			continue
		}
		for _, ct := range c.fresh {
			if parsed[ct.Name] && len(ct.After()) > 0 {
				found = true
			}
		}
	}
	if !found {
		return false
	}
	type def struct {
		c  *Container
		by *cand
	}
	all := map[string]def{}
	for _, c := range cands {
		for _, ct := range contribution(c) {
			all[ct.Name] = def{ct, c}
		}
	}
	at := func(d def) string { return where(d.by, d.c.Name, files) }
	lineOf := func(ct *Container, i int) int {
		if i < len(ct.AfterLines) {
			return ct.AfterLines[i]
		}
		return ct.Line
	}
	bad := map[*cand]bool{}
	fail := func(d def, i int, format string, args ...any) {
		st := d.by.status()
		st.Errors = append(st.Errors, &Error{File: nameOf(st.Path, files), Line: lineOf(d.c, i),
			Field: fmt.Sprintf("spec.after[%d].name", i), Msg: fmt.Sprintf(format, args...)})
		bad[d.by] = true
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	checked := func(d def) bool { return d.by.useFresh && parsed[d.c.Name] }

	for _, n := range names {
		d := all[n]
		if !checked(d) {
			continue
		}
		for i, dep := range d.c.After() {
			target, ok := all[dep.Name]
			switch {
			case !ok:
				fail(d, i, "%q is not defined by any manifest in the directory; define it, or remove it from spec.after", dep.Name)
			case dep.Condition == ConditionHealthy && !target.c.mayHaveProbe():
				fail(d, i, "%q (%s) has no spec.health, so it never becomes healthy; give it a probe, or wait for condition started", dep.Name, at(target))
			}
		}
	}

	// Cycles: a depth-first walk; a back edge closes a cycle, reported on
	// every edge of it that a checked container owns.
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		color[n] = grey
		stack = append(stack, n)
		d := all[n]
		for _, dep := range d.c.After() {
			if _, ok := all[dep.Name]; !ok {
				continue
			}
			switch color[dep.Name] {
			case white:
				visit(dep.Name)
			case grey:
				cycle := slices.Clone(stack[slices.Index(stack, dep.Name):])
				for k, name := range cycle {
					from := all[name]
					if !checked(from) {
						continue
					}
					// Told from the container whose file it is.
					var words []string
					for _, m := range append(slices.Clone(cycle[k:]), cycle[:k]...) {
						words = append(words, fmt.Sprintf("%s (%s)", m, at(all[m])))
					}
					text := strings.Join(words, " -> ") + " -> " + name
					next := cycle[(k+1)%len(cycle)]
					for i, e := range from.c.After() {
						if e.Name == next {
							fail(from, i, "the start order has a cycle: %s; remove one of these from spec.after", text)
						}
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
	}
	for _, n := range names {
		if color[n] == white {
			visit(n)
		}
	}
	for c := range bad {
		c.useFresh = false
	}
	return len(bad) > 0
}
