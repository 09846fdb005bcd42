package state

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portsentry-nft/portsentry-nft/internal/scanner"
)

// The journal is one line per change, tab-separated, free text quoted:
//
//	add	ADDR	EXPIRES_MS	TIMEOUT_MS	TIMES	PORT	PORTS	FIRST_MS	LAST_MS	"KIND"	"PROTO"	"HOST"	"HOSTS_DENY"	ORIGIN	WEAK	EVIDENCE	FROM	TOOL
//	del	ADDR
//	times	ADDR	N	LAST_MS
//
// Times are Unix milliseconds. Plain text rather than JSON: a restart with
// 100k live blocks reads them in a fraction of the time, and an admin can
// still read it. Journals written before ORIGIN existed have 13 fields;
// their blocks read as detected, or manual when KIND says so. WEAK is
// "weak" for a block on a single probe, else empty (absent before it
// existed). EVIDENCE is what the block rests on (Block.Evidence) and FROM
// the fleet host a fleet block mirrors, each a bare word or empty (absent
// before they existed). TOOL is the scanner that sent the probe
// (internal/scanner's names; empty or absent: none known).

var errEntry = errors.New("malformed journal line")

func ms(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func fromMS(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}, err
	}
	return time.UnixMilli(n), nil
}

func encodeEntry(e entry) string {
	switch e.Op {
	case "del":
		return "del\t" + e.Addr.String() + "\n"
	case "times":
		return "times\t" + e.Addr.String() + "\t" + strconv.Itoa(e.Times) + "\t" + ms(e.Last) + "\n"
	}
	b := e.Block
	ports := make([]string, len(b.Ports))
	for i, p := range b.Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	return strings.Join([]string{"add", b.Addr.String(), ms(b.Expires), strconv.FormatInt(b.Timeout.Milliseconds(), 10),
		strconv.Itoa(b.Times), strconv.Itoa(int(b.Port)), strings.Join(ports, ","), ms(b.First), ms(b.Last),
		strconv.Quote(b.Kind), strconv.Quote(b.Proto), strconv.Quote(b.Host), strconv.Quote(b.HostsDeny), string(b.Origin), weakField(b.Weak),
		b.Evidence, b.From, b.Tool}, "\t") + "\n"
}

func decodeEntry(line string) (entry, error) { return decodeInto(line, new(Block)) }

// maxFields is the most fields a line has (an add line's).
const maxFields = 18

// decodeInto is decodeEntry with the Block of an add line read into b
// (its Ports reused): a restart reads a million lines without allocating
// for each. The strings of b may share line's memory.
func decodeInto(line string, b *Block) (entry, error) {
	var fa [maxFields]string
	f := fa[:0]
	for len(f) < maxFields {
		i := strings.IndexByte(line, '\t')
		if i < 0 {
			f = append(f, line)
			line = ""
			break
		}
		f, line = append(f, line[:i]), line[i+1:]
	}
	if line != "" || len(f) < 2 {
		return entry{}, errEntry
	}
	a, err := netip.ParseAddr(f[1])
	if err != nil {
		return entry{}, errEntry
	}
	switch {
	case f[0] == "del" && len(f) == 2:
		return entry{Op: "del", Addr: a}, nil
	case f[0] == "times" && len(f) == 4:
		n, err := strconv.Atoi(f[2])
		last, err2 := fromMS(f[3])
		if err != nil || err2 != nil {
			return entry{}, errEntry
		}
		return entry{Op: "times", Addr: a, Times: n, Last: last}, nil
	case f[0] != "add" || len(f) < 13 || len(f) > maxFields:
		return entry{}, errEntry
	}
	if err := decodeAdd(f, a, b); err != nil {
		return entry{}, err
	}
	return entry{Op: "add", Block: b}, nil
}

// decodeAdd reads the fields of an add line (13 to 18 of them) into b.
func decodeAdd(f []string, a netip.Addr, b *Block) error {
	*b = Block{Addr: a, Ports: b.Ports[:0]}
	var errs [12]error
	b.Expires, errs[0] = fromMS(f[2])
	var tmo int64
	tmo, errs[1] = strconv.ParseInt(f[3], 10, 64)
	b.Timeout = time.Duration(tmo) * time.Millisecond
	b.Times, errs[2] = strconv.Atoi(f[4])
	var port uint64
	port, errs[3] = strconv.ParseUint(f[5], 10, 16)
	b.Port = uint16(port)
	for ps, more := f[6], f[6] != ""; more; {
		var p string
		p, ps, more = strings.Cut(ps, ",")
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return errEntry
		}
		b.Ports = append(b.Ports, uint16(n))
	}
	if len(b.Ports) == 0 {
		b.Ports = nil
	}
	b.First, errs[4] = fromMS(f[7])
	b.Last, errs[5] = fromMS(f[8])
	b.Kind, errs[6] = strconv.Unquote(f[9])
	b.Proto, errs[7] = strconv.Unquote(f[10])
	b.Host, errs[8] = strconv.Unquote(f[11])
	b.HostsDeny, errs[9] = strconv.Unquote(f[12])
	for _, err := range errs {
		if err != nil {
			return errEntry
		}
	}
	b.Origin = OriginDetect
	if b.Kind == "manual" {
		b.Origin = OriginManual
	}
	return decodeLater(f, b)
}

// decodeLater reads the fields added to add lines over time: ORIGIN,
// WEAK, EVIDENCE, FROM and TOOL.
func decodeLater(f []string, b *Block) error {
	var err error
	if len(f) >= 14 && f[13] != "" {
		if b.Origin, err = ParseOrigin(f[13]); err != nil {
			return errEntry
		}
	}
	if len(f) >= 15 {
		switch f[14] {
		case "weak":
			b.Weak = true
		case "":
		default:
			return errEntry
		}
	}
	if len(f) >= 17 {
		if !bareWord(f[15]) || !bareWord(f[16]) {
			return errEntry
		}
		b.Evidence, b.From = f[15], f[16]
	}
	if len(f) == 18 && f[17] != "" {
		// A name this version does not know reads as unknown.
		b.Tool = scanner.Parse(f[17]).String()
	}
	return nil
}

// bareWord: letters, digits, '-' and '_' only (an evidence's name, a
// fleet host's), or empty.
func bareWord(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s) <= 64
}

func weakField(w bool) string {
	if w {
		return "weak"
	}
	return ""
}
