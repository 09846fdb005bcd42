package legacy

import (
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// item is one key of the YAML being built: a value, or a nested section.
type item struct {
	key      string
	value    *yaml.Node
	sub      *section
	comments []string
}

// section is a YAML mapping whose keys keep the order they were first used in.
type section struct{ items []*item }

func (s *section) get(key string) *item {
	for _, it := range s.items {
		if it.key == key {
			return it
		}
	}
	it := &item{key: key}
	s.items = append(s.items, it)
	return it
}

// set gives key a value, adding comment lines above it.
func (s *section) set(key string, v *yaml.Node, comments ...string) {
	it := s.get(key)
	it.value = v
	it.comments = append(it.comments, comments...)
}

// sec returns the nested section under key, adding comment lines above it.
func (s *section) sec(key string, comments ...string) *section {
	it := s.get(key)
	if it.sub == nil {
		it.sub = &section{}
	}
	it.comments = append(it.comments, comments...)
	return it.sub
}

func (s *section) empty() bool {
	for _, it := range s.items {
		if it.value != nil || (it.sub != nil && !it.sub.empty()) {
			return false
		}
	}
	return true
}

func (s *section) node() *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, it := range s.items {
		var v *yaml.Node
		switch {
		case it.value != nil:
			v = it.value
		case it.sub != nil && !it.sub.empty():
			v = it.sub.node()
		default:
			continue
		}
		k := str(it.key)
		k.HeadComment = comment(it.comments...)
		m.Content = append(m.Content, k, v)
	}
	return m
}

// comment formats lines as a YAML comment block ("# ..." lines).
func comment(lines ...string) string {
	var out []string
	for _, l := range lines {
		for p := range strings.SplitSeq(l, "\n") {
			out = append(out, strings.TrimRight("# "+printable(p), " "))
		}
	}
	return strings.Join(out, "\n")
}

// printable replaces what a YAML comment cannot hold.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || (unicode.IsPrint(r) && r != '\ufeff') {
			return r
		}
		return '?'
	}, s)
}

func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.Contains(s, "$") {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func intNode(n int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(n)}
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// seq is a sequence, in flow style ([a, b]) when flow is true.
func seq(flow bool, items ...*yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Content: items}
	if flow {
		n.Style = yaml.FlowStyle
	}
	return n
}

func strSeq(flow bool, ss ...string) *yaml.Node {
	items := make([]*yaml.Node, len(ss))
	for i, s := range ss {
		items[i] = str(s)
	}
	return seq(flow, items...)
}
