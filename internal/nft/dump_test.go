package nft

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// attr encodes one netlink attribute (type, payload, padding).
func attr(typ uint16, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload)+3)
	binary.NativeEndian.PutUint16(b, uint16(4+len(payload)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

const nested = 0x8000 // NLA_F_NESTED, as the kernel sets it

// elemList is the attribute part of a NEWSETELEM message holding keys.
func elemList(keys ...[]byte) []byte {
	var list []byte
	for _, k := range keys {
		key := attr(unix.NFTA_SET_ELEM_KEY|nested, attr(unix.NFTA_DATA_VALUE, k))
		timeout := attr(unix.NFTA_SET_ELEM_TIMEOUT, binary.BigEndian.AppendUint64(nil, 3600000))
		expires := attr(unix.NFTA_SET_ELEM_EXPIRATION, binary.BigEndian.AppendUint64(nil, 1500))
		list = append(list, attr(unix.NFTA_LIST_ELEM|nested, append(append(key, timeout...), expires...))...)
	}
	out := attr(unix.NFTA_SET_ELEM_LIST_TABLE, []byte("portsentry\x00"))
	out = append(out, attr(unix.NFTA_SET_ELEM_LIST_SET, []byte("blocked\x00"))...)
	return append(out, attr(unix.NFTA_SET_ELEM_LIST_ELEMENTS|nested, list)...)
}

func TestParseElems(t *testing.T) {
	seen := map[[16]byte]time.Duration{}
	dup, err := parseElems(elemList([]byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}), seen)
	if err != nil || dup || len(seen) != 2 {
		t.Fatalf("two keys: dup %v err %v counted %d", dup, err, len(seen))
	}
	if left := seen[[16]byte{10, 0, 0, 1}]; left != 1500*time.Millisecond {
		t.Errorf("time left %s, want 1.5s (NFTA_SET_ELEM_EXPIRATION in ms)", left)
	}
	// The next message of the dump repeats one: a resize during the walk.
	dup, err = parseElems(elemList([]byte{10, 0, 0, 2}, []byte{10, 0, 0, 3}), seen)
	if err != nil || !dup || len(seen) != 3 {
		t.Fatalf("repeated key: dup %v err %v counted %d", dup, err, len(seen))
	}
	if _, err := parseElems(elemList([]byte{1, 2, 3}), seen); !errors.Is(err, errMalformed) {
		t.Fatalf("3-byte key: err %v, want errMalformed", err)
	}
	if _, err := parseElems([]byte{0xff, 0xff, 1}, seen); !errors.Is(err, errMalformed) {
		t.Fatalf("truncated attributes: err %v, want errMalformed", err)
	}
}

// Any bytes: no panic, and a clean parse yields at most one element per
// 24 bytes (the smallest element).
func FuzzParseElems(f *testing.F) {
	f.Add(elemList([]byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}))
	f.Add(elemList(make([]byte, 16)))
	f.Add(elemList())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seen := map[[16]byte]time.Duration{}
		if _, err := parseElems(b, seen); err == nil && len(seen) > len(b)/24 {
			t.Fatalf("%d keys from %d bytes", len(seen), len(b))
		}
	})
}
