// Package fleet makes one host's detection block the scanner on every host:
// each portsentry-nft daemon of a fleet publishes the blocks it decides to a
// NATS JetStream cluster that the administrator runs (3 or 5 nats-server
// 2.11 or later), and mirrors the other hosts' blocks into its own kernel.
//
// Why a real engine: the fleet's state must survive hosts and servers going
// away, expire by itself, and be readable by a host that comes back after a
// partition; JetStream key-value buckets with a TTL per key do all of it,
// replicated, and their subjects carry the permissions that keep one host
// from speaking for another. This package is only a client: it is never in
// the path of a local block (Publish only queues), and with no fleet section
// in the configuration it is not built at all.
//
// # Data model
//
// Four key-value buckets (JetStream streams KV_<bucket>, history 1, per-key
// TTL: LimitMarkerTTL set, so an expiry reaches watchers as a purge):
//
//	bucket                key              value (JSON)                      TTL
//	portsentry_blocks     <host>.<addr>    addr, expires, origin, scan_type, the block's time left
//	                                       ports, reason, seen (correlate)
//	portsentry_lifts      <host>.<addr>    addr, by, at                      fleet.max_timeout
//	portsentry_sightings  <addr>.<host>    at                                fleet.correlate.window
//	portsentry_hosts      <host>           addrs, updated (shown, trusted    none
//	                                       for nothing)
//
// <host> is the host's fleet name (fleet.name: letters, digits, '-', '_').
// <addr> is one subject token (EncodeAddr): 203-0-113-7 for 203.0.113.7,
// 2001_db8__7 for 2001:db8::7. Records are written to the subjects
// $KV.<bucket>.<key>, so the servers can let host h1 publish only
// $KV.portsentry_blocks.h1.*, $KV.portsentry_lifts.h1.*,
// $KV.portsentry_sightings.*.h1 and $KV.portsentry_hosts.h1: a host writes
// its own records and nobody else's (deploy/nats has the permissions). A
// record's host and address are read from its key, never from its value.
//
//   - A block is written with the time it has left as its TTL
//     (jetstream.WithMsgTTL); a re-ban writes it again with a later expiry,
//     which extends it. When it expires the servers remove it; the kernel's
//     element times out by itself at the same moment, so nobody acts.
//   - A lift is an administrator's fleet-wide unblock (Client.Unblock, from
//     "portsentry-nft unblock" on any host). A host cannot delete another
//     host's record, so it writes a lift of its own: every host removes the
//     address's blocks that began before the lift (Sink.FleetUnblock), and
//     the host that owns a block record older than the lift purges it.
//     Times are the servers' timestamps of the records.
//   - A sighting is a tripwire probe that did not block (Client.Sighting).
//     The hosts that saw one address within the window are the subjects
//     $KV.portsentry_sightings.<addr>.*: one stream info request with that
//     subject filter counts them. When fleet.correlate.hosts distinct hosts
//     did, the host that counted them publishes a block of origin
//     "correlate" naming them.
//   - A host's record in portsentry_hosts lists its own addresses
//     (Client.SetOwnAddresses), for people to read. It protects nothing: a
//     host's claim about itself is what a compromised host would forge to
//     make a scanner immune. No host enforces a fleet block of an address
//     Options.Protected protects (the daemon's guard: local addresses,
//     gateways, nameservers, never_block, and the fleet's own hosts and
//     servers as this host's fleet.hosts and fleet.servers list them), or
//     of a loopback, link-local, multicast or unspecified address; such
//     records are refused, counted and logged once per address.
//
// Timeouts read from the fleet are capped at fleet.max_timeout: a rogue or
// misconfigured host cannot block an address for a year everywhere.
// Expiry times are compared with the local clock: hosts need NTP.
//
// # Publishing
//
// Publish, Unblock, Sighting and SetOwnAddresses only queue a write in a
// bounded outbox (Options.OutboxSize; a later write of the same key replaces
// a waiting one; when full the write is dropped and counted). One goroutine
// sends the outbox while connected, batchSize writes at a time with
// js.PublishMsgAsync, and waits for their acknowledgements together (a
// restore of 10,000 blocks is one burst, not 10,000 round trips). What fails
// goes back to the front and is retried with backoff; what expired while
// waiting is dropped (OutboxExpired), and what is left after a reconnect is
// sent with the time it has left. Sightings wait in a lane of their own and
// go after every other write, at most sightingRate a second, and their
// counts run on a goroutine of their own: a spoofed flood makes one per
// source, and must not delay a block nor flood the cluster (see outbox).
// After a failure nothing is sent before the backoff ends, however many
// writes arrive meanwhile, unless the connection just came back.
//
// # Mirroring
//
// Three watchers (hosts, lifts, blocks: each an ordered consumer that
// delivers the current values, then the updates) run per connection. On a
// reconnect, or when a watcher closes, they are made anew with backoff and
// replay the buckets; revisions already handled are skipped, and keys that
// vanished meanwhile are forgotten. The first complete replay closes Ready.
// The Sink is called from the mirroring goroutine only.
//
// # Buckets and permissions
//
// A host creates a bucket that does not exist (it needs
// $JS.API.STREAM.CREATE.KV_<bucket> for the four buckets, nothing else of
// the stream API that changes or deletes); an administrator may create them
// beforehand instead (deploy/nats/README.md), and the hosts then only bind.
package fleet
