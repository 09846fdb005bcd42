package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// CrowdSec speaks CrowdSec both ways, each opt-in: it serves CrowdSec's
// bouncer API (internal/bouncerapi), so CrowdSec's remediation components
// (crowdsec-firewall-bouncer, the nginx and traefik bouncers) poll this
// host's blocks as if it were CrowdSec's local API, when Listen is set;
// and it pushes alerts to a CrowdSec local API (internal/lapi) when
// LAPI.URL is set. The zero value does neither.
type CrowdSec struct {
	// Listen is host:port of the listener; "" is off.
	Listen string `yaml:"listen"`
	// APIKeysFile holds the bouncers' API keys, one a line (ReadAPIKeys).
	APIKeysFile string `yaml:"api_keys_file"`
	// TLSCert and TLSKey, both or neither: the listener speaks HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`

	// LAPI pushes the blocks that may leave this host to a CrowdSec local
	// API as alerts.
	LAPI LAPI `yaml:"lapi"`

	// Keys are the keys read from APIKeysFile.
	Keys []APIKey `yaml:"-"`
}

// LAPI is a CrowdSec local API that this host pushes alerts to, as a
// machine (a watcher: cscli machines add NAME --password P). Off unless
// URL is set.
type LAPI struct {
	// URL is the local API's base URL, http:// or https://
	// (http://127.0.0.1:8080/ on a CrowdSec host).
	URL string `yaml:"url"`
	// MachineID is the machine's name, as cscli machines add made it.
	MachineID string `yaml:"machine_id"`
	// PasswordFile holds the machine's password, alone on one line.
	PasswordFile string `yaml:"password_file"`

	// Password is the password read from PasswordFile.
	Password Secret `yaml:"-"`
}

// Enabled reports whether alerts are pushed to a local API.
func (l LAPI) Enabled() bool { return l.URL != "" }

// Enabled reports whether the bouncer API is served.
func (c CrowdSec) Enabled() bool { return c.Listen != "" }

// APIKey is one bouncer's key, with the name its line gives (or "line N").
type APIKey struct {
	Name string
	Key  Secret
}

// The bounds of crowdsec.api_keys_file: keys, not a file of anything.
const (
	MaxAPIKeys      = 1024
	maxAPIKeysBytes = 256 << 10
	minAPIKeyLen    = 16
	maxAPIKeyLen    = 256
)

// keysFile is crowdsec.api_keys_file, read.
type keysFile struct {
	keys []APIKey
	mode fs.FileMode // its permission bits, for secretWarnings
	err  error       // reading it or its lines (an Errors locates each); never quotes a key
}

// readKeysFile reads crowdsec.api_keys_file ("" or a relative path, which
// validate reports: nothing).
func readKeysFile(path string) keysFile {
	if path == "" || !filepath.IsAbs(path) {
		return keysFile{}
	}
	f, err := os.Open(path)
	if err != nil {
		return keysFile{err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return keysFile{err: err}
	}
	if !fi.Mode().IsRegular() {
		return keysFile{err: fmt.Errorf("%s is not a regular file", path)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAPIKeysBytes+1))
	if err != nil {
		return keysFile{err: fmt.Errorf("read %s: %w", path, err)}
	}
	if len(data) > maxAPIKeysBytes {
		return keysFile{err: fmt.Errorf("%s is larger than %d bytes: want API keys, one a line", path, maxAPIKeysBytes)}
	}
	keys, err := ParseAPIKeys(path, data)
	return keysFile{keys: keys, mode: fi.Mode().Perm(), err: err}
}

// ParseAPIKeys reads the lines of an API keys file (name names it in
// errors): on each, a key, or a name and a key separated by blanks; blank
// lines and lines starting with # are skipped. A key is 16 to 256
// printable characters without blanks; no two lines give the same key
// or name. Errors come back as Errors, one a line, never quoting a key.
func ParseAPIKeys(name string, data []byte) ([]APIKey, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, Errors{{File: name, Msg: "not a text file (contains NUL bytes)"}}
	}
	var keys []APIKey
	var errs Errors
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxAPIKeysBytes+1)
	for line := 1; sc.Scan(); line++ {
		k, err := parseKeyLine(sc.Text(), line)
		switch {
		case err != nil:
			errs = append(errs, &Error{File: name, Line: line, Column: 1, Msg: err.Error()})
		case k.Key == "":
		case seen[string(k.Key)] != 0:
			errs = append(errs, &Error{File: name, Line: line, Column: 1, Msg: fmt.Sprintf("the key of line %d again: give each bouncer its own", seen[string(k.Key)])})
		case seen["name "+k.Name] != 0:
			errs = append(errs, &Error{File: name, Line: line, Column: 1, Msg: fmt.Sprintf("the name %q of line %d again", k.Name, seen["name "+k.Name])})
		case len(keys) == MaxAPIKeys:
			errs = append(errs, &Error{File: name, Line: line, Column: 1, Msg: fmt.Sprintf("more than %d keys", MaxAPIKeys)})
		default:
			seen[string(k.Key)], seen["name "+k.Name] = line, line
			keys = append(keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, &Error{File: name, Msg: err.Error()})
	}
	if len(errs) == 0 && len(keys) == 0 {
		errs = append(errs, &Error{File: name, Msg: "no API key in it: want one a line (a name and a key, or a key)"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return keys, nil
}

// parseKeyLine reads one line; a zero APIKey for a blank or comment line.
func parseKeyLine(text string, line int) (APIKey, error) {
	text = strings.TrimSpace(text)
	if text == "" || text[0] == '#' {
		return APIKey{}, nil
	}
	f := strings.Fields(text)
	var k APIKey
	switch len(f) {
	case 1:
		k = APIKey{Name: fmt.Sprintf("line %d", line), Key: Secret(f[0])}
	case 2:
		k = APIKey{Name: f[0], Key: Secret(f[1])}
		if len(k.Name) > 64 || !printable(k.Name) {
			return APIKey{}, fmt.Errorf("want a name of at most 64 printable characters")
		}
	default:
		return APIKey{}, fmt.Errorf("want a key, or a name and a key (%d words here)", len(f))
	}
	if n := len(k.Key); n < minAPIKeyLen || n > maxAPIKeyLen || !printable(string(k.Key)) {
		return APIKey{}, fmt.Errorf("want a key of %d to %d printable characters (this one has %d)", minAPIKeyLen, maxAPIKeyLen, n)
	}
	return k, nil
}

// printable reports whether s is printable ASCII without blanks.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// crowdsecFiles are the files of the crowdsec section, read: the
// bouncers' API keys and the local API machine's password.
type crowdsecFiles struct {
	keys   keysFile
	lapiPW passwordFile
}

// crowdsec checks the crowdsec section, when there is one, with its files
// as readKeysFile and readPasswordFile read them.
func (v *validator) crowdsec(c CrowdSec, files crowdsecFiles) {
	v.lapi(c.LAPI, files.lapiPW)
	keys := files.keys
	if c.Listen == "" {
		for _, k := range []struct{ key, val string }{{"crowdsec.api_keys_file", c.APIKeysFile}, {"crowdsec.tls_cert", c.TLSCert}, {"crowdsec.tls_key", c.TLSKey}} {
			if k.val != "" {
				v.bad(k.key, "has no effect without crowdsec.listen (host:port, e.g. 127.0.0.1:8081)")
			}
		}
		return
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		v.bad("crowdsec.listen", "want host:port such as 127.0.0.1:8081, got %q", c.Listen)
	}
	switch {
	case c.APIKeysFile == "":
		v.badNear("crowdsec.api_keys_file", "crowdsec.listen", "the bouncer API needs its API keys: an absolute path to a file of them, one a line")
	case !filepath.IsAbs(c.APIKeysFile):
		v.bad("crowdsec.api_keys_file", "want an absolute path, got %q", c.APIKeysFile)
	case keys.err != nil:
		if es, ok := keys.err.(Errors); ok {
			v.badIn("crowdsec.api_keys_file", es)
		} else {
			v.bad("crowdsec.api_keys_file", "%v", keys.err)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		v.badNear("crowdsec.tls_key", "crowdsec.tls_cert", "give crowdsec.tls_cert and crowdsec.tls_key together, or neither")
	case c.TLSCert == "" && c.TLSKey != "":
		v.badNear("crowdsec.tls_cert", "crowdsec.tls_key", "give crowdsec.tls_cert and crowdsec.tls_key together, or neither")
	}
	v.absPath("crowdsec.tls_cert", c.TLSCert)
	v.absPath("crowdsec.tls_key", c.TLSKey)
}

// crowdsecWarnings are the ways the bouncers' keys may leak that do not
// stop loading: a keys file or TLS key that others than its owner may
// read, and keys sent in clear (no TLS on a listener that is not
// loopback).
func (c *Config) crowdsecWarnings(v *validator, files crowdsecFiles) {
	cs := c.CrowdSec
	c.lapiWarnings(v, files.lapiPW)
	keys := files.keys
	if !cs.Enabled() {
		return
	}
	if exposed(keys.mode) {
		v.bad("crowdsec.api_keys_file", "%s is readable by %s (mode %04o): chmod 0600 %[1]s", cs.APIKeysFile, readers(keys.mode), keys.mode)
	}
	if cs.TLSKey != "" {
		if fi, err := os.Stat(cs.TLSKey); err == nil && exposed(fi.Mode().Perm()) {
			v.bad("crowdsec.tls_key", "%s holds a secret and is readable by %s (mode %04o): chmod 0600 %[1]s", cs.TLSKey, readers(fi.Mode().Perm()), fi.Mode().Perm())
		}
		return
	}
	if host, _, err := net.SplitHostPort(cs.Listen); err == nil {
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && !strings.EqualFold(host, "localhost") {
			v.bad("crowdsec.listen", "the bouncers' API keys come in clear to %s (no TLS, not loopback): anyone on the path can read them; set crowdsec.tls_cert and crowdsec.tls_key", cs.Listen)
		}
	}
}
