package nft

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// fragment is a piece of a rule: its nft(8) words and the expressions the
// kernel evaluates for them. Every matcher and statement of the ruleset is
// one function below, so text and netlink stay one definition.
type fragment struct {
	text    string
	exprs   []expr.Any
	comment string // a "#" line above the rule (see xtQueueTo)
}

// set references are resolved by name when the rule is added (see Install).
func join(frags []fragment) ruleDef {
	var r ruleDef
	words := make([]string, 0, len(frags))
	var comments []string
	for _, f := range frags {
		if f.text == "" && len(f.exprs) == 0 {
			continue // nothing (e.g. no flood limit)
		}
		words = append(words, f.text)
		if f.comment != "" {
			comments = append(comments, f.comment)
		}
		r.exprs = append(r.exprs, f.exprs...)
	}
	r.text = strings.Join(words, " ")
	r.comment = strings.Join(comments, "; ")
	return r
}

const reg1 = 1

func cmpEq(data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: data}
}

func lookup(set string, invert bool) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg1, SetName: set, Invert: invert}
}

func op(invert bool) string {
	if invert {
		return "!= "
	}
	return ""
}

// nfproto restricts an inet-family rule to IPv4 or IPv6, as "ip"/"ip6" do.
func nfproto(k keyType) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if k == keyIPv6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1}, cmpEq([]byte{p})}
}

// addrIn matches the source (off 12/8) or destination (16/24) address against a set.
func addrIn(k keyType, dst bool, set string, invert bool) fragment {
	fam, off, n, dir := "ip", uint32(12), uint32(4), "saddr"
	if k == keyIPv6 {
		fam, off, n = "ip6", 8, 16
	}
	if dst {
		dir = "daddr"
		off += n
	}
	ex := append(nfproto(k),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		lookup(set, invert))
	return fragment{text: fam + " " + dir + " " + op(invert) + "@" + set, exprs: ex}
}

func saddrIn(k keyType, set string, invert bool) fragment { return addrIn(k, false, set, invert) }
func daddrIn(k keyType, set string, invert bool) fragment { return addrIn(k, true, set, invert) }

// iifLoopback matches packets received on lo (ifindex 1 in every namespace).
func iifLoopback() fragment {
	return fragment{text: `iif "lo"`, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: reg1},
		cmpEq(binaryutil.NativeEndian.PutUint32(1)),
	}}
}

// daddrLocal matches packets addressed to this host (fib daddr type
// local): in prerouting, where routing has not decided yet.
func daddrLocal() fragment {
	return fragment{text: "fib daddr type local", exprs: []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		cmpEq(binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)),
	}}
}

func iifnameIn(set string, invert bool) fragment {
	return fragment{text: "iifname " + op(invert) + "@" + set, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		lookup(set, invert),
	}}
}

// dportIn matches the layer-4 protocol and its destination port against a set.
func dportIn(proto byte, name, set string) fragment {
	return fragment{text: name + " dport @" + set, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		cmpEq([]byte{proto}),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		lookup(set, false),
	}}
}

// daddrDportIn matches "ip daddr . tcp dport @set" (address and port
// loaded into consecutive registers for a concatenated lookup).
func daddrDportIn(k keyType, proto byte, name, set string) fragment {
	fam, off, n, portReg := "ip", uint32(16), uint32(4), uint32(9) // 32-bit register after the address
	if k == keyIPv6 {
		fam, off, n, portReg = "ip6", 24, 16, 2 // 16-byte register after the address
	}
	ex := append(nfproto(k),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		cmpEq([]byte{proto}),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		lookup(set, false))
	return fragment{text: fam + " daddr . " + name + " dport @" + set, exprs: ex}
}

// saddrDport loads "ip saddr . tcp dport" (address and port in
// consecutive registers, for a concatenated key): the source and the port
// it probed.
func saddrDport(k keyType, name string) (text string, ex []expr.Any) {
	fam, off, n, portReg := "ip", uint32(12), uint32(4), uint32(9) // 32-bit register after the address
	if k == keyIPv6 {
		fam, off, n, portReg = "ip6", 8, 16, 2 // 16-byte register after the address
	}
	return fam + " saddr . " + name + " dport", []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

// saddrDportIn matches "ip saddr . tcp dport [!=] @set".
func saddrDportIn(k keyType, name, set string, invert bool) fragment {
	text, ex := saddrDport(k, name)
	return fragment{text: text + " " + op(invert) + "@" + set, exprs: append(ex, lookup(set, invert))}
}

// addSaddrDport adds the packet's source and destination port to set,
// with timeout (nft: add @set { ip saddr . tcp dport timeout 500ms }).
func addSaddrDport(k keyType, name, set string, timeout time.Duration) fragment {
	text, ex := saddrDport(k, name)
	return fragment{text: "add @" + set + " { " + text + " timeout " + nftDuration(timeout) + " }", exprs: append(ex,
		&expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD, Timeout: timeout})}
}

// tcpFlagsNone matches TCP segments with none of mask's flags set.
func tcpFlagsNone(mask byte, names string) fragment {
	return fragment{text: "tcp flags & (" + names + ") == 0", exprs: []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		cmpEq([]byte{0}),
	}}
}

// conntrack state bits (nf_conntrack_common.h: NF_CT_STATE_BIT).
const (
	ctInvalid = 1 << 0
	ctNew     = 1 << 3
)

func ctState(bits uint32, names string) fragment {
	return fragment{text: "ct state " + names, exprs: []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}}
}

// pkttypeHost matches unicast packets addressed to this host.
func pkttypeHost() fragment {
	return fragment{text: "meta pkttype host", exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: reg1},
		cmpEq([]byte{unix.PACKET_HOST}),
	}}
}

func counter() fragment { return fragment{text: "counter", exprs: []expr.Any{&expr.Counter{}}} }

// limitRate lets rate packets a second through, burst at once. nft(8)
// writes no burst when it is its default, 5 packets.
func limitRate(rate, burst uint32) fragment {
	text := fmt.Sprintf("limit rate %d/second", rate)
	if burst != 5 {
		text += fmt.Sprintf(" burst %d packets", burst)
	}
	return fragment{text: text, exprs: []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Unit: expr.LimitTimeSecond, Burst: burst}}}
}

// logGroup sends a copy to NFLOG group g with the log prefix prefix (it
// tells the daemon which rule sent the packet, see capture.Rule); q > 0
// adds the rule's queue-threshold (the kernel uses the smaller of it and
// the group's).
func logGroup(prefix string, g, q uint16) fragment {
	text := "log prefix " + strconv.Quote(prefix) + " group " + strconv.Itoa(int(g))
	l := &expr.Log{Key: 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP, Data: []byte(prefix), Group: g}
	if q > 0 {
		text += " queue-threshold " + strconv.Itoa(int(q))
		l.Key |= 1 << unix.NFTA_LOG_QTHRESHOLD
		l.QThreshold = q
	}
	return fragment{text: text, exprs: []expr.Any{l}}
}

// queueTo sends the packet to NFQUEUE num; bypass accepts it when no
// program listens (fail-open).
func queueTo(num uint16) fragment {
	return fragment{text: "queue num " + strconv.Itoa(int(num)) + " bypass", exprs: []expr.Any{
		&expr.Queue{Num: num, Flag: expr.QueueFlagBypass},
	}}
}

// xtQueueTo is queueTo through the xtables NFQUEUE target (nft_compat),
// for kernels without nft_queue. Its text is queueTo's, which nft(8) would
// install on a kernel with nft_queue, under a comment that says so: nft(8)
// cannot load an xtables target from text.
func xtQueueTo(num uint16) fragment {
	f := queueTo(num)
	f.comment = "installed by the daemon through the xtables NFQUEUE target (nft_compat): this kernel has no nft_queue"
	f.exprs = []expr.Any{xtQueue(num)}
	return f
}

// xtQueue is queueTo through the xtables NFQUEUE target, revision 3
// (struct xt_NFQ_info_v3: queue number, queues total, flags; host order,
// padded to 8 bytes); flag 0x1 is bypass.
func xtQueue(num uint16) expr.Any {
	info := make(xt.Unknown, 8)
	copy(info, binaryutil.NativeEndian.PutUint16(num))
	copy(info[2:], binaryutil.NativeEndian.PutUint16(1))
	copy(info[4:], binaryutil.NativeEndian.PutUint16(1))
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}

func verdict(k expr.VerdictKind) fragment {
	text := map[expr.VerdictKind]string{expr.VerdictReturn: "return", expr.VerdictDrop: "drop", expr.VerdictAccept: "accept"}[k]
	return fragment{text: text, exprs: []expr.Any{&expr.Verdict{Kind: k}}}
}

// fragments makes one fragment of several (a matcher used by more than
// one rule).
func fragments(fs ...fragment) fragment {
	r := join(fs)
	return fragment{text: r.text, exprs: r.exprs, comment: r.comment}
}

// limitNamed applies the named limit object name (shared by every rule
// that names it).
func limitNamed(name string) fragment {
	return fragment{text: "limit name " + strconv.Quote(name), exprs: []expr.Any{
		&expr.Objref{Type: unix.NFT_OBJECT_LIMIT, Name: name},
	}}
}

// addSaddr adds the packet's source address to set, with timeout (nft:
// add @set { ip saddr timeout 1h }). The add fails when the set is full:
// the rule then stops there, and the packet goes on to the next one.
func addSaddr(k keyType, set string, timeout time.Duration) fragment {
	fam, off, n := "ip", uint32(12), uint32(4)
	if k == keyIPv6 {
		fam, off, n = "ip6", 8, 16
	}
	return fragment{text: "add @" + set + " { " + fam + " saddr timeout " + nftDuration(timeout) + " }", exprs: []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_ADD, Timeout: timeout},
	}}
}

// nftDuration writes d as nft(8) does: 1d2h3m4s500ms.
func nftDuration(d time.Duration) string {
	ms := int64(d / time.Millisecond)
	if ms == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}} {
		if ms >= u.n {
			fmt.Fprintf(&b, "%d%s", ms/u.n, u.name)
			ms %= u.n
		}
	}
	return b.String()
}
