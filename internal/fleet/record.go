package fleet

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

// maxPorts bounds the ports a block record carries.
const maxPorts = 64

// blockRecord is the value of a BucketBlocks key. The host and the address
// of a record are those of its key (the only part the servers' permissions
// vouch for); Addr is repeated for people reading the bucket and must agree.
type blockRecord struct {
	Addr     string    `json:"addr"`
	Expires  time.Time `json:"expires"`
	Origin   string    `json:"origin"`
	ScanType string    `json:"scan_type,omitempty"`
	Ports    []uint16  `json:"ports,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Seen     []string  `json:"seen,omitempty"` // origin correlate: the hosts that saw it
	// Evidence is the publisher's claim (EvidenceForgeable, ...); absent
	// in records of older versions, which read as forgeable.
	Evidence string `json:"evidence,omitempty"`
	// Tool is the scanner that sent the probe; absent in records of older
	// versions.
	Tool string `json:"tool,omitempty"`
}

// newBlockRecord is the record of b, this host's block of a until exp.
func newBlockRecord(a netip.Addr, exp time.Time, b Block) blockRecord {
	ports := b.Ports
	if len(ports) > maxPorts {
		ports = ports[:maxPorts]
	}
	return blockRecord{Addr: a.String(), Expires: exp.UTC(), Origin: b.Origin, ScanType: b.ScanType,
		Ports: ports, Reason: b.Reason, Seen: b.Seen, Evidence: evidence(b.Evidence), Tool: tool(b.Tool)}
}

// tool is s if it is one of internal/scanner's names, "unknown" for any
// other name (a newer version's, or junk), "" for none: a record's tool is
// shown and counted, so it is one of a fixed few.
func tool(s string) string {
	if s == "" {
		return ""
	}
	return scanner.Parse(s).String()
}

// evidence is e if it is one of the kinds a record may claim, else
// EvidenceForgeable (empty: a record of an older version).
func evidence(e string) string {
	switch e {
	case EvidenceHandshake, EvidenceAdmin:
		return e
	}
	return EvidenceForgeable
}

// liftRecord is the value of a BucketLifts key: an administrator on By
// lifted the address's fleet blocks made before At.
type liftRecord struct {
	Addr string    `json:"addr"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// hostRecord is the value of a BucketHosts key.
type hostRecord struct {
	Addrs   []string  `json:"addrs"`
	Updated time.Time `json:"updated"`
}

// sightingRecord is the value of a BucketSightings key.
type sightingRecord struct {
	At time.Time `json:"at"`
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fleet: marshal " + err.Error()) // only our own plain structs are marshalled
	}
	return b
}

// decodeBlock reads a block record of host's key for addr.
func decodeBlock(host string, addr netip.Addr, data []byte) (Block, error) {
	var r blockRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return Block{}, fmt.Errorf("block record: %w", err)
	}
	if a, err := netip.ParseAddr(r.Addr); err != nil || a.Unmap() != addr {
		return Block{}, fmt.Errorf("block record: address %q is not its key's %s", r.Addr, addr)
	}
	if r.Expires.IsZero() {
		return Block{}, fmt.Errorf("block record: no expiry")
	}
	if len(r.Ports) > maxPorts {
		r.Ports = r.Ports[:maxPorts]
	}
	// Origins and scan types are a handful of strings, each decoded anew:
	// 100k blocks of the view keep one copy of each, not 100k.
	return Block{Addr: addr, Host: host, Admin: host == AdminName, Evidence: evidence(r.Evidence), Expires: r.Expires,
		Origin: words.intern(r.Origin), ScanType: words.intern(r.ScanType), Ports: r.Ports, Reason: r.Reason, Seen: r.Seen, Tool: tool(r.Tool)}, nil
}

// words interns the few distinct origins and scan types records carry (at
// most 256: a host writing others keeps its own copies).
var words = interner{m: map[string]string{}}

type interner struct {
	mu sync.Mutex
	m  map[string]string
}

func (in *interner) intern(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if w, ok := in.m[s]; ok {
		return w
	}
	if len(in.m) < 256 {
		in.m[s] = s
	}
	return s
}
