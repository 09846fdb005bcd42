// Package nft owns everything portsentry-nft does to the kernel's nftables
// state: the ruleset (table inet portsentry) built from the configuration,
// rendered both as nft(8) text and as netlink expressions from one
// description, installed in one transaction; and the Writer that adds and
// removes elements of the sets blocked and blocked6 in batches.
//
// It talks netlink through github.com/google/nftables and never runs a
// subprocess. The pitfalls of that library version (silent element loss in
// large calls, stuck connections after a failed Flush) are handled here, so
// callers only see "committed" or an error.
package nft
