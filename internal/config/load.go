package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the configuration at path. When path is DefaultPath and the
// file does not exist, the embedded default is used (an explicitly given
// file must exist). Problems come back as Errors.
func Load(path string) (*Config, error) {
	data, mode, err := readConfigFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == DefaultPath {
		return Parse(EmbeddedName, defaultYAML)
	}
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return parse(path, data, mode, false)
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse(EmbeddedName, defaultYAML)
	if err != nil {
		panic("embedded default config: " + err.Error())
	}
	return c
}

// Parse decodes data (named file in errors) over the embedded defaults,
// reads the ignore files, the password file and the API keys file it names (relative to
// file), validates the result and derives the fields the rest of the
// program reads.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, 0, false)
}

// parse is Parse of a file whose permission bits are mode (0: unknown),
// for the warning about a password others may read; admin: the fleet
// administrator's file (LoadFleetAdmin), whose fleet.name is the one a
// host's may not be.
func parse(file string, data []byte, mode fs.FileMode, admin bool) (*Config, error) {
	c := &Config{}
	// The defaults are themselves a file: decode them first, then the user's over them.
	if err := decodeInto(c, EmbeddedName, defaultYAML); err != nil {
		return nil, err
	}
	d, err := decodeFile(c, file, data)
	if err != nil {
		return nil, err
	}
	c.File = file
	files := readIgnoreFiles(c.IgnoreFiles, file)
	pw := readPasswordFile(c.Fleet.PasswordFile)
	cs := crowdsecFiles{keys: readKeysFile(c.CrowdSec.APIKeysFile), lapiPW: readPasswordFile(c.CrowdSec.LAPI.PasswordFile)}
	if errs := c.validate(d, files, pw, cs, admin); len(errs) > 0 {
		return nil, errs
	}
	c.derive(files, pw, func(key string) bool { return d.pos[key] != nil })
	c.CrowdSec.Keys = cs.keys.keys
	c.CrowdSec.LAPI.Password = cs.lapiPW.secret
	c.Warnings = append(c.Warnings, c.secretWarnings(d, mode, pw, cs)...)
	return c, nil
}

// ignoreFile is one entry of ignore_files, read and parsed.
type ignoreFile struct {
	key      string // ignore_files[i], where its errors are reported
	prefixes []netip.Prefix
	warnings []*Error
	err      error // reading or parsing; an Errors locates each bad line
}

// readIgnoreFiles reads and parses the ignore files that the configuration
// file names; a problem is kept for validate to report.
func readIgnoreFiles(names []string, file string) []ignoreFile {
	var out []ignoreFile
	for i, f := range names {
		if !filepath.IsAbs(f) && file != EmbeddedName {
			// Relative to the config file, not to the daemon's working directory (/ under systemd).
			f = filepath.Join(filepath.Dir(file), f)
		}
		r := ignoreFile{key: fmt.Sprintf("ignore_files[%d]", i)}
		data, err := os.ReadFile(f)
		if err != nil {
			r.err = err
		} else {
			r.prefixes, r.warnings, r.err = ParseIgnoreFile(f, data)
		}
		out = append(out, r)
	}
	return out
}

func decodeInto(c *Config, file string, data []byte) error {
	_, err := decodeFile(c, file, data)
	return err
}

// decoder walks a yaml.Node tree against the Config struct, so that every
// error knows its line, column and key, and remembers where each key was
// for the validation that follows.
type decoder struct {
	file string
	errs Errors
	pos  map[string]*yaml.Node
}

func decodeFile(c *Config, file string, data []byte) (*decoder, error) {
	d := &decoder{file: file, pos: map[string]*yaml.Node{}}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, Errors{{File: file, Msg: "not a YAML text file (contains NUL bytes)"}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{d.syntaxError(err, data)}
	}
	if len(doc.Content) == 0 { // empty file: all defaults
		return d, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return d, nil
	}
	d.decodeStruct(root, reflect.ValueOf(c).Elem(), "")
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return d, nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the messages of yaml.v3's parser (not its scanner).
// yaml.v3 reports these with a 0-based line ("line 1" is the second line)
// and with no line at all on the first line; scanner errors are 1-based.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func (d *decoder) syntaxError(err error, data []byte) *Error {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		// An unexpected end of the file is reported on the line after the
		// last one; point at the last line instead.
		lines := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		line = max(1, min(line, lines))
		return &Error{File: d.file, Line: line, Column: 1, Msg: "YAML syntax: " + m[2]}
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if yamlParserProblems[msg] {
		return &Error{File: d.file, Line: 1, Column: 1, Msg: "YAML syntax: " + msg}
	}
	return &Error{File: d.file, Msg: "YAML syntax: " + msg}
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	e := &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldNames maps yaml names to field indexes of struct type t.
func fieldNames(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
		names = append(names, tag)
	}
	return m, names
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields, names := fieldNames(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if prev, dup := seen[k.Value]; dup {
			d.errorf(k, key, "duplicate key (first at line %d)", prev.Line)
			continue
		}
		seen[k.Value] = k
		idx, ok := fields[k.Value]
		if !ok {
			if s := nearest(k.Value, names); s != "" {
				d.errorf(k, key, "unknown key; did you mean %q?", s)
			} else {
				d.errorf(k, key, "unknown key; valid keys here: %s", strings.Join(names, ", "))
			}
			continue
		}
		d.pos[key] = val
		d.decodeValue(val, v.Field(idx), key)
	}
}

func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			if ie, ok := err.(*itemError); ok {
				d.errorf(ie.node, fmt.Sprintf("%s[%d]", key, ie.index), "%v", ie.err)
				return
			}
			d.errorf(n, key, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, key)
		return
	case reflect.Map:
		d.decodeMap(n, v, key)
		return
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			v.Set(reflect.MakeSlice(t, 0, 0))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, key, "want a list, got %s", describe(n))
			return
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ik := fmt.Sprintf("%s[%d]", key, i)
			d.pos[ik] = item
			d.decodeValue(item, out.Index(i), ik)
		}
		v.Set(out)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "want %s, got %s", kindName(t), describe(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.errorf(n, key, "want %s, got %q", kindName(t), n.Value)
	}
}

// decodeMap decodes a mapping with string keys into v; each entry's
// position is known as key.name.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, key string) {
	t := v.Type()
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode || t.Key().Kind() != reflect.String {
		d.errorf(n, key, "want a mapping, got %s", describe(n))
		return
	}
	out := reflect.MakeMapWithSize(t, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		ik := key + "." + k.Value
		if out.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.errorf(k, ik, "given twice")
			continue
		}
		d.pos[ik] = val
		elem := reflect.New(t.Elem()).Elem()
		d.decodeValue(val, elem, ik)
		out.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
	}
	v.Set(out)
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Uint16, reflect.Uint32:
		return "a whole number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}
