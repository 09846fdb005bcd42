#!/usr/bin/env bash
# portsentry-nft demo: two network namespaces joined by a veth pair; the
# daemon (embedded default config) protects "psdemo-host" and nmap scans it
# from "psdemo-attacker". Nothing outside the two namespaces is touched.
# Usage (as root): make demo
set -euo pipefail

BIN=${BIN:-bin/portsentry-nft}
HOST=psdemo-host
ATTACKER=psdemo-attacker
LOG=
WORK=
DAEMON_PID=

cleanup() {
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
	ip netns del "$HOST" 2>/dev/null || true
	ip netns del "$ATTACKER" 2>/dev/null || true
	[ -n "$LOG" ] && rm -f "$LOG"
	[ -n "$WORK" ] && rm -rf "$WORK"
	return 0
}
trap cleanup EXIT

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (network namespaces and nftables): sudo make demo" >&2
	exit 1
fi
cleanup
trap cleanup EXIT
LOG=$(mktemp /tmp/portsentry-nft-demo.XXXXXX)
WORK=$(mktemp -d /tmp/portsentry-nft-demo.XXXXXX)

ip netns add "$HOST"
ip netns add "$ATTACKER"
ip -n "$HOST" link set lo up
ip -n "$ATTACKER" link set lo up
ip -n "$HOST" link add veth-host type veth peer name veth-attacker netns "$ATTACKER"
ip -n "$HOST" addr add 10.201.0.1/24 dev veth-host
ip -n "$ATTACKER" addr add 10.201.0.2/24 dev veth-attacker
ip -n "$HOST" link set veth-host up
ip -n "$ATTACKER" link set veth-attacker up

echo "== starting portsentry-nft (embedded default config) in namespace $HOST (10.201.0.1)"
# The embedded defaults, with state and control socket in a directory of
# the demo's own: a second run starts afresh, and the host's
# /var/lib/portsentry-nft and /run/portsentry-nft stay untouched.
CONF="$WORK/demo.yaml"
printf 'state: {dir: %s/state}\ncontrol: {socket: %s/control.sock}\n' "$WORK" "$WORK" >"$CONF"
echo "   (state and control socket in $WORK)"
ARGS=(--config "$CONF")
ip netns exec "$HOST" "$BIN" run "${ARGS[@]}" >"$LOG" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do
	grep -q "initialized and monitoring" "$LOG" && break
	kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$LOG"; exit 1; }
	sleep 0.1
done
cat "$LOG"

echo
echo "== nmap -sS -p 1-100 10.201.0.1 from namespace $ATTACKER (10.201.0.2)"
ip netns exec "$ATTACKER" timeout 60 nmap -Pn -n -sS --max-retries 1 --host-timeout 30s -p 1-100 10.201.0.1 | grep -vE '^(Starting|MAC Address|$)' || true
sleep 0.5

echo
echo "== what the daemon logged"
grep attackalert "$LOG" | head -n 20

echo
echo "== nft list set inet portsentry blocked (in $HOST)"
ip netns exec "$HOST" nft list set inet portsentry blocked

echo
echo "== a second scan from the blocked host now gets no answer at all"
ip netns exec "$ATTACKER" timeout 60 nmap -Pn -n -sS --max-retries 1 --host-timeout 10s -p 22,80,443 10.201.0.1 | grep -E 'filtered|closed|open' || true
