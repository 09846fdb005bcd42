// Package listeners knows which TCP and UDP ports of the host have a live
// service behind them, so that such a port is never a tripwire.
//
// Classic PortSentry bound the ports it watched itself, so a port in use by a
// real service could not be monitored: bind failed and the port was skipped.
// portsentry-nft watches ports with nftables instead and binds nothing, so it
// has to learn the same fact another way. Without it, a client connecting to
// a service that started on a monitored port (a web server moved to 8080, an
// RPC service on 111) would be taken for a scanner and blocked.
//
// The package reads the kernel's socket tables with sock_diag (inet_diag
// over netlink): TCP sockets in state LISTEN and bound, unconnected UDP
// sockets, IPv4 and IPv6, each with its local address, so a listener on
// 127.0.0.1 does not shadow the public addresses. From those it offers:
//
//   - [Dump]: one reading of the socket tables, optionally in another
//     network namespace;
//   - [Covers] and [Set]: whether a probe to an address and port would reach
//     a live socket; a Set is an immutable snapshot whose [Set.InUse] is
//     allocation-free, for the re-check in user space before any action;
//   - [Elements]: the in-use ports restricted to the monitored ones, in the
//     shape of the kernel sets the log rules skip; package nft takes them
//     as is (nft.Shape.InUse) and does the one encoding into set elements
//     (updated in place, no ruleset reload);
//   - [Watcher]: polls the tables (every 250ms by default, so a new service
//     stops being watched within a second), keeps the latest Set and reports
//     what appeared and disappeared, so the daemon can update the kernel
//     sets and write an adminalert naming the port and, through
//     [ProcessName], the process.
package listeners
