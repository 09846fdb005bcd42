// Package e2e holds the kernel-tier acceptance tests: the real
// portsentry-nft binary runs in a network namespace made by the test, real
// scanners (nmap, hping3) attack it from a second one, and the tests assert
// what an admin would check: the attackalert lines and
// `nft list set inet portsentry blocked`. They need root; see
// internal/netnstest.
package e2e
