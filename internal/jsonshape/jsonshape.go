// Package jsonshape compares the shape of two JSON documents: which object
// keys exist at every path and what JSON type each value has. Contract
// tests use it to check that a simulator's payloads look like the real
// recorded ones, generically instead of field by field.
package jsonshape

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Mismatch is one difference in shape at a path such as
// "pull_request.head.sha" or "labels[].name".
type Mismatch struct {
	Path string
	Msg  string
}

func (m Mismatch) String() string { return m.Path + ": " + m.Msg }

// Options tune Compare.
type Options struct {
	// Ignore lists paths (and their subtrees) that need not match, e.g.
	// fields the real service sends that tryd never reads.
	Ignore []string
	// AllowExtra permits keys in got that want lacks (default false:
	// extra keys are mismatches too, so a simulator cannot invent fields).
	AllowExtra bool
}

// Compare reports where got's shape differs from want's. Both are JSON
// texts. A null in either document matches any type at that path, since
// real payloads carry null for absent optional values. Arrays are compared
// by the union of their elements' shapes.
func Compare(want, got []byte, opts Options) ([]Mismatch, error) {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return nil, fmt.Errorf("jsonshape: want: %w", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return nil, fmt.Errorf("jsonshape: got: %w", err)
	}
	c := &comparer{opts: opts}
	c.compare("", w, g)
	sort.Slice(c.out, func(i, j int) bool { return c.out[i].Path < c.out[j].Path })
	return c.out, nil
}

type comparer struct {
	opts Options
	out  []Mismatch
}

func (c *comparer) ignored(path string) bool {
	for _, p := range c.opts.Ignore {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[]") {
			return true
		}
	}
	return false
}

func (c *comparer) add(path, format string, args ...any) {
	if path == "" {
		path = "$"
	}
	c.out = append(c.out, Mismatch{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func (c *comparer) compare(path string, want, got any) {
	if c.ignored(path) || want == nil || got == nil {
		return
	}
	if kw, kg := kind(want), kind(got); kw != kg {
		c.add(path, "type %s, want %s", kg, kw)
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, wv := range w {
			p := join(path, k)
			gv, ok := g[k]
			if !ok {
				if !c.ignored(p) {
					c.add(p, "missing (want %s)", kind(wv))
				}
				continue
			}
			c.compare(p, wv, gv)
		}
		if !c.opts.AllowExtra {
			for k, gv := range g {
				if _, ok := w[k]; !ok && !c.ignored(join(path, k)) {
					c.add(join(path, k), "unexpected key (%s)", kind(gv))
				}
			}
		}
	case []any:
		g := got.([]any)
		if len(w) == 0 || len(g) == 0 {
			return
		}
		c.compare(path+"[]", merge(w), merge(g))
	}
}

// merge folds an array's elements into one value whose shape is the union
// of theirs (objects gain every key any element has).
func merge(elems []any) any {
	var acc any
	for _, e := range elems {
		acc = mergeTwo(acc, e)
	}
	return acc
}

func mergeTwo(a, b any) any {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		return a
	}
	out := make(map[string]any, len(am))
	for k, v := range am {
		out[k] = v
	}
	for k, v := range bm {
		out[k] = mergeTwo(out[k], v)
	}
	return out
}
