// Package systemtest holds the system-tier tests: portsentry-nft as an
// admin deploys it, in a booted Debian 12 guest.
//
// A root file system made by debootstrap (mkrootfs.sh, cached as a tarball
// by make rootfs) is booted with
//
//	systemd-nspawn -D ROOT -b --register=no --keep-unit \
//	    --network-namespace-path=/run/netns/A --capability=CAP_NET_ADMIN \
//	    --volatile=overlay
//
// in namespace A of an internal/netnstest pair, and entered with
// nsenter -t <the guest's systemd> -a. The tests install the .deb with apt
// and drive the service with systemctl (start, reload, stop, remove), scan
// the guest with nmap from namespace B and read `nft list set inet
// portsentry blocked` inside it; then, on a fresh guest, they apply
// deploy/ansible/site.yml with ansible-playbook over the
// community.docker.nsenter connection (--check, twice for changed=0, and
// the import of a legacy portsentry.conf). Fast checks of the deployment
// files run here too: the unit against systemd-analyze verify and
// security, the role's unit template against the unit, yamllint and
// ansible-lint, the man pages, make install, and the .deb against lintian.
//
// The tests skip unless PORTSENTRY_SYSTEM_TESTS=1 (make e2e-system sets it,
// with PORTSENTRY_DEB, PORTSENTRY_BINARY and PORTSENTRY_ROOTFS); then they
// need root like the kernel tier (netnstest.Require: under CI they fail
// instead of skipping). Every guest, namespace and temporary tree is
// removed at the end, on failure too; a failing test logs the guest's
// journal and console.
package systemtest
