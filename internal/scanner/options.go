package scanner

import "encoding/binary"

// TCP option kinds.
const (
	optEnd       = 0
	optNOP       = 1
	optMSS       = 2
	optWScale    = 3
	optSACKPerm  = 4
	optTimestamp = 8
)

// maxKinds bounds the option kinds options keeps in order (40 bytes of
// options hold at most 40).
const maxKinds = 12

// options is what readOptions found in a TCP header's options.
type options struct {
	kinds [maxKinds]byte // in order, NOPs included, as far as kept
	n     int            // options read (all of them, kept or not)
	mss   uint16
	sack  bool
	ts    bool
	tsVal uint32
}

// readOptions walks o. It stops at the end-of-options option, at a
// malformed length, or at an option that runs past o; what came before
// counts.
func readOptions(o []byte) options {
	var r options
	for i := 0; i < len(o); {
		kind := o[i]
		if kind == optEnd {
			break
		}
		n := 1
		if kind != optNOP {
			if len(o)-i < 2 || o[i+1] < 2 || int(o[i+1]) > len(o)-i {
				break
			}
			n = int(o[i+1])
			r.value(kind, o[i:i+n])
		}
		if r.n < maxKinds {
			r.kinds[r.n] = kind
		}
		r.n++
		i += n
	}
	return r
}

// value keeps what an option of kind says (o is the whole option).
func (r *options) value(kind byte, o []byte) {
	switch {
	case kind == optMSS && len(o) == 4:
		r.mss = binary.BigEndian.Uint16(o[2:4])
	case kind == optSACKPerm && len(o) == 2:
		r.sack = true
	case kind == optTimestamp && len(o) == 10:
		r.ts = true
		r.tsVal = binary.BigEndian.Uint32(o[2:6])
	}
}

// mssOnly: the options are one MSS of 1460.
func (r *options) mssOnly() bool {
	return r.n == 1 && r.kinds[0] == optMSS && r.mss == 1460
}

// first is the first option that is not a NOP (0 when none).
func (r *options) first() byte {
	for i := 0; i < min(r.n, maxKinds); i++ {
		if r.kinds[i] != optNOP {
			return r.kinds[i]
		}
	}
	return optEnd
}

// nmapOS: nmap's OS detection probes carry a timestamp of 0xFFFFFFFF, or
// options that do not start with the MSS as every operating system's do.
func (r *options) nmapOS() bool {
	if r.ts && r.tsVal == 0xFFFFFFFF {
		return true
	}
	return r.n > 0 && r.first() != optMSS
}

// windowsOrder: the options are Windows' SYN options (MSS, NOP, window
// scale, NOP, NOP, SACK permitted), which ZMap >= 4.1 sends.
func (r *options) windowsOrder() bool {
	want := [...]byte{optMSS, optNOP, optWScale, optNOP, optNOP, optSACKPerm}
	if r.n != len(want) {
		return false
	}
	return [6]byte(r.kinds[:6]) == want
}
