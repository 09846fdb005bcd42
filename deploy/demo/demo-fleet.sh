#!/usr/bin/env bash
# portsentry-nft fleet demo: three hosts (namespaces psfleet-h1..h3 on a
# bridge in psfleet-lan), each running the daemon with a fleet section and
# one server of the 3-node NATS cluster of deploy/nats (its files as they
# are, only the addresses on the command line), and a scanner. A SYN
# forged from a victim's address at h1 blocks the victim on h1 only; a
# scanner that probes h1 and h2 (correlate.hosts 2) is blocked on all
# three, and so is an administrator's block. Nothing outside the
# namespaces is touched.
# Usage (as root): make demo-fleet
set -euo pipefail

BIN=${BIN:-bin/portsentry-nft}
NATS=${NATS:-bin/nats-server}
LAN=psfleet-lan
SCANNER=psfleet-scanner
HOSTS=(h1 h2 h3)
WORK=
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	for h in "${HOSTS[@]}"; do ip netns del "psfleet-$h" 2>/dev/null || true; done
	ip netns del "$SCANNER" 2>/dev/null || true
	ip netns del "$LAN" 2>/dev/null || true
	[ -n "$WORK" ] && rm -rf "$WORK"
	return 0
}

if [ "$(id -u)" -ne 0 ]; then
	echo "demo-fleet: needs root (network namespaces and nftables): sudo make demo-fleet" >&2
	exit 1
fi
cleanup
trap cleanup EXIT
WORK=$(mktemp -d /tmp/portsentry-nft-demo-fleet.XXXXXX)
CONFS=$(cd "$(dirname "$0")/../nats" && pwd)
NATS=$(realpath "$NATS") # each server runs in its data directory

# join NS ADDR: a namespace on the bridge, its end named lan0.
N=0
join() {
	N=$((N + 1))
	ip netns add "$1"
	ip -n "$1" link set lo up
	ip -n "$LAN" link add "port$N" type veth peer name lan0 netns "$1"
	ip -n "$LAN" link set "port$N" master br0
	ip -n "$LAN" link set "port$N" up
	ip -n "$1" addr add "$2/24" dev lan0
	ip -n "$1" link set lan0 up
}
ip netns add "$LAN"
ip -n "$LAN" link add br0 type bridge
ip -n "$LAN" link set br0 up
for i in 1 2 3; do join "psfleet-h$i" "10.201.0.$i"; done
join "$SCANNER" 10.201.0.99

ROUTES=nats://10.201.0.1:6222,nats://10.201.0.2:6222,nats://10.201.0.3:6222
echo "== NATS cluster: deploy/nats/n1..n3.conf, one server in each host's namespace"
for i in 1 2 3; do
	mkdir -p "$WORK/n$i"
	(cd "$WORK/n$i" && exec ip netns exec "psfleet-h$i" "$NATS" -c "$CONFS/n$i.conf" \
		-a "10.201.0.$i" -p 4222 --cluster "nats://10.201.0.$i:6222" --routes "$ROUTES" \
		>"$WORK/n$i.log" 2>&1) &
	PIDS+=($!)
done

echo "== portsentry-nft on h1, h2, h3 (10.201.0.1-3), each in the fleet under its own NATS user (an nkey)"
for i in 1 2 3; do
	h=h$i
	mkdir -p "$WORK/$h"
	# The host's nkey seed: deploy/nats's example (public, for this demo
	# only), kept 0600 as a host keeps /etc/portsentry-nft/fleet.nk.
	install -m 0600 "$CONFS/example-keys/$h.nk" "$WORK/$h/fleet.nk"
	cat >"$WORK/$h/portsentry.yaml" <<YAML
state: {dir: $WORK/$h/state}
control: {socket: $WORK/$h/control.sock}
fleet:
  servers: [nats://10.201.0.$i:4222, nats://10.201.0.$((i % 3 + 1)):4222, nats://10.201.0.$(((i + 1) % 3 + 1)):4222]
  name: $h
  nkey: $WORK/$h/fleet.nk
  hosts: [10.201.0.1, 10.201.0.2, 10.201.0.3]
  correlate: {hosts: 2}
YAML
	ip netns exec "psfleet-$h" "$BIN" run --config "$WORK/$h/portsentry.yaml" >"$WORK/$h.log" 2>&1 &
	PIDS+=($!)
done
# A new cluster elects its leaders, then the first host creates the buckets.
for h in "${HOSTS[@]}"; do
	for _ in $(seq 600); do
		grep -q "fleet: mirrored the fleet" "$WORK/$h.log" && break
		sleep 0.1
	done
	grep -q "fleet: mirrored the fleet" "$WORK/$h.log" || { echo "$h did not join the fleet:"; cat "$WORK/$h.log" "$WORK"/n?.log; exit 1; }
	echo "   $h: $(grep -m1 'fleet: connected' "$WORK/$h.log" | sed 's/.*fleet: //')"
done

# has HOST ADDR: whether ADDR is in HOST's set blocked, waiting up to 5 s.
has() {
	for _ in $(seq 50); do
		ip netns exec "psfleet-$1" nft list set inet portsentry blocked | grep -q "$2" && return 0
		sleep 0.1
	done
	return 1
}
where() {
	local out=""
	for h in "${HOSTS[@]}"; do
		if ip netns exec "psfleet-$h" nft list set inet portsentry blocked | grep -q "$1"; then out="$out $h"; fi
	done
	echo "   $1 is blocked on:${out:- no host}"
}

echo
echo "== 1. one SYN forged from 10.201.0.77 (a victim) at h1's tripwire port 1 (hping3 -a)"
ip netns exec "$SCANNER" hping3 -q -S -c 1 -p 1 -a 10.201.0.77 10.201.0.1 >/dev/null 2>&1 || true
has h1 10.201.0.77 || true
sleep 1
where 10.201.0.77
echo "   (forged probes block on the host probed, PortSentry's contract, and travel nowhere)"

echo
echo "== 2. nmap -sS -p 1,11,15,79 against h1, then h2, from $SCANNER (10.201.0.99)"
for i in 1 2; do
	ip netns exec "$SCANNER" timeout 60 nmap -Pn -n -sS --max-retries 1 --host-timeout 30s -p 1,11,15,79 "10.201.0.$i" | grep -E '^(PORT|[0-9]+/)' || true
done
has h3 10.201.0.99 || true
where 10.201.0.99
echo "   (two hosts saw it: h3 counted their sightings and blocked it too, without being probed)"

echo
echo "== 3. the administrator of h1 blocks 10.201.0.88"
"$BIN" block --socket "$WORK/h1/control.sock" 10.201.0.88
for h in "${HOSTS[@]}"; do has "$h" 10.201.0.88 || true; done
where 10.201.0.88
echo
echo "== what h1 logged"
grep attackalert "$WORK/h1.log" | head -n 12
echo
echo "== what h3 logged"
grep attackalert "$WORK/h3.log" | head -n 12
for h in "${HOSTS[@]}"; do
	echo
	echo "== nft list set inet portsentry blocked (in $h)"
	ip netns exec "psfleet-$h" nft list set inet portsentry blocked
done
echo
echo "== portsentry-nft list on h2"
"$BIN" list --socket "$WORK/h2/control.sock"
