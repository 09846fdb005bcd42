#!/usr/bin/env bash
# Builds the Debian 12 root filesystem the system-tier tests boot with
# systemd-nspawn, as a zstd tarball: make rootfs (mk/deploy.mk) runs it when
# the tarball is missing. The tarball's name carries a hash of this file, so
# changing the package list below builds a new one.
#
# Usage (root): mkrootfs.sh OUT.tar.zst [MIRROR]
# MIRROR defaults to debootstrap's own default.
set -euo pipefail

OUT=${1:?usage: mkrootfs.sh OUT.tar.zst [MIRROR]}
MIRROR=${2:-}
SUITE=bookworm
# What the tests need in the guest: systemd to boot, nftables (nft list set),
# python3 + python3-apt for Ansible's modules, iproute2 for diagnostics.
INCLUDE=systemd,systemd-sysv,dbus,nftables,python3,python3-apt,iproute2

if [ "$(id -u)" -ne 0 ]; then
	echo "mkrootfs: needs root (debootstrap)" >&2
	exit 1
fi
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "$(dirname "$OUT")/.rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root

echo "mkrootfs: debootstrap $SUITE into $ROOT"
# shellcheck disable=SC2086 # MIRROR is empty or one word
timeout 1200 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" $MIRROR \
	>"$WORK/debootstrap.log" 2>&1 || {
	tail -n 40 "$WORK/debootstrap.log" >&2
	[ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 40 "$ROOT/debootstrap/debootstrap.log" >&2
	exit 1
}

# A fresh machine id per boot, a fixed hostname, no console login, and apt
# that never reaches for the network (the guest has none).
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
echo portsentry-guest >"$ROOT/etc/hostname"
ln -sf /dev/null "$ROOT/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/getty@.service"
ln -sf /dev/null "$ROOT/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$ROOT/etc/systemd/system/apt-daily-upgrade.timer"
rm -f "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*_Packages
echo "# no network in the test guest" >"$ROOT/etc/apt/sources.list"

tar -C "$ROOT" --numeric-owner --xattrs -cf - . | zstd -q -T0 -3 -o "$WORK/rootfs.tar.zst"
mv "$WORK/rootfs.tar.zst" "$OUT"
echo "mkrootfs: wrote $OUT ($(du -h "$OUT" | cut -f1))"
