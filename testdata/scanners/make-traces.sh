#!/bin/sh
# make-traces.sh re-makes the labelled scanner traces of this directory: each
# tool scans a target from a second network namespace over a veth pair, and
# tcpdump on the target's side keeps what the attacker sent (TCP and UDP).
# Run as root from this directory; needs ip, tcpdump, nmap, masscan, zmap,
# hping3, ncat, and /usr/bin/python3 with scapy. The traces are pcap files
# named TOOL-RUN-FAMILY.pcap; LABELS says which tool each one holds. To test
# a fresh capture without replacing these: copy this script and LABELS to an
# empty directory, run it there, then go test ./internal/scanner -traces DIR. Addresses: 10.201.0.0/24, fd00:201::/64.
set -eu
for tool in ip tcpdump nmap masscan zmap hping3 ncat; do
	command -v $tool >/dev/null || { echo "make-traces.sh: $tool is not installed" >&2; exit 1; }
done
A=pstr-a-$$ B=pstr-b-$$
cleanup() {
	[ -n "${LISTENER:-}" ] && kill "$LISTENER" 2>/dev/null || true
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$A"
ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 10.201.0.1/24 dev va
ip -n "$B" addr add 10.201.0.2/24 dev vb
ip -n "$A" addr add fd00:201::1/64 dev va nodad
ip -n "$B" addr add fd00:201::2/64 dev vb nodad
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set va up
ip -n "$B" link set vb up
MAC=$(ip -n "$A" -br link show va | awk '{print $3}')
sleep 2 # link-local addresses and neighbours settle
# One open port for nmap -O (it wants an open and a closed one).
ip netns exec "$A" ncat -l -k -p 22 >/dev/null 2>&1 &
LISTENER=$!

# capture NAME CMD...: runs CMD in the attacker's namespace while tcpdump
# keeps its TCP and UDP packets in NAME.pcap.
capture() {
	name=$1
	shift
	ip netns exec "$A" tcpdump -i va -U -s 256 -w "$name.pcap" \
		'(ip src 10.201.0.2 or ip6 src fd00:201::2) and (tcp or udp)' 2>/dev/null &
	dump=$!
	sleep 1
	ip netns exec "$B" timeout 120 "$@" >/dev/null 2>&1 || echo "$name: $* failed" >&2
	sleep 1
	kill -INT "$dump"
	wait "$dump" || true
	echo "$name: $(tcpdump -r "$name.pcap" 2>/dev/null | wc -l) packets"
}

PORTS=1-100
for fam in 4 6; do
	if [ $fam = 4 ]; then T=10.201.0.1 F=; else T=fd00:201::1 F=-6; fi
	for s in sS sT sF sN sX sU; do
		capture "nmap-$s-$fam" nmap $F -n -Pn -$s -p $PORTS --max-retries 0 -T4 $T
	done
	capture "nmap-O-$fam" nmap $F -n -Pn -O -p 22,23 --max-os-tries 1 $T
done
# Debian's masscan (1.3.2) and zmap (2.1.1) scan IPv4 only.
capture masscan-4 masscan --adapter vb --router-mac "$MAC" -p $PORTS --rate 500 --wait 1 10.201.0.1
capture hping3-4 hping3 -S -p ++1 -c 100 -i u5000 10.201.0.1
capture zmap-4 zmap -i vb -S 10.201.0.2 -G "$MAC" -p 80 -r 500 -c 1 -b /dev/null -o /dev/null 10.201.0.0/25

# Mirai and ZMap >= 4.1 are not packaged here: their packets are made with
# scapy from the tools' construction (they test the rule, not the field).
/usr/bin/python3 - <<'PY'
import random
from scapy.all import Ether, IP, IPv6, TCP, wrpcap
random.seed(23)
def ip2int(a):
    return int.from_bytes(bytes(int(x) for x in a.split(".")), "big")
mirai = []
for i in range(100):
    dst = "10.201.%d.%d" % (random.randint(0, 255), random.randint(1, 254))
    # Mirai's scanner: random IP ID, TTL 64, random window, no options,
    # the sequence number is the target's address; ports 23 and 2323.
    mirai.append(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.201.0.2", dst=dst, id=random.getrandbits(16), ttl=64) /
                 TCP(sport=random.getrandbits(16) | 1024, dport=random.choice([23, 23, 23, 2323]), flags="S",
                     seq=ip2int(dst), window=random.getrandbits(16) | 1, options=[]))
wrpcap("mirai-4.pcap", mirai)
zmap = []
opts = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
for i in range(100):
    # ZMap >= 4.1: random IP ID, TTL 64, window 65535, Windows' options.
    t = TCP(sport=random.randint(32768, 61000), dport=80, flags="S", seq=random.getrandbits(32),
            window=65535, options=opts)
    if i % 2:
        zmap.append(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IPv6(src="fd00:201::2", dst="fd00:201::%x" % (i + 16), hlim=64) / t)
    else:
        zmap.append(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.201.0.2", dst="10.201.0.%d" % (i + 1), id=random.getrandbits(16), ttl=64) / t)
wrpcap("zmap-new.pcap", zmap)
PY
for f in mirai-4 zmap-new; do echo "$f: $(tcpdump -r "$f.pcap" 2>/dev/null | wc -l) packets"; done
