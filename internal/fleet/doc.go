// Package fleet makes one host's detection block the scanner on every host:
// each portsentry-nft daemon of a fleet publishes the blocks it decides to a
// NATS JetStream cluster that the administrator runs (3 or 5 nats-server
// 2.11 or later), and enforces the other hosts' blocks in its own kernel.
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
//	bucket                key              value (JSON)                      TTL (MaxAge)
//	portsentry_blocks     <host>.<addr>    addr, expires, origin, evidence,  the block's time left
//	                                       scan_type, ports, reason, seen    (fleet.max_timeout)
//	portsentry_lifts      <host>.<addr>    addr, by, at                      fleet.max_timeout (the same)
//	portsentry_sightings  <addr>.<host>    at                                fleet.correlate.window (the same)
//	portsentry_hosts      <host>           addrs, updated (shown, trusted    none
//	                                       for nothing)
//
// <host> is the host's fleet name (fleet.name: letters, digits, '-', '_'),
// or AdminName, "admin", for the fleet's administrator: no host may take
// that name. <addr> is one subject token (EncodeAddr): 203-0-113-7 for
// 203.0.113.7, 2001_db8__7 for 2001:db8::7. Records are written to the
// subjects $KV.<bucket>.<key>, so the servers can let host h1 publish only
// $KV.portsentry_blocks.h1.*, $KV.portsentry_lifts.h1.*,
// $KV.portsentry_sightings.*.h1 and $KV.portsentry_hosts.h1: a host writes
// its own records and nobody else's, and only the administrator's NATS
// user, whose credentials are never deployed on a host, writes those
// under admin (deploy/nats has the permissions).
//
//   - A block is written with the time it has left as its TTL
//     (jetstream.WithMsgTTL), fleet.max_timeout at most; a re-ban writes
//     it again with a later expiry, which extends it. When it expires the
//     servers remove it; the kernel's element times out by itself at the
//     same moment, so nobody acts.
//   - A lift (lift.go) reaches what its key's identity may lift. The
//     administrator's, admin.<addr> (Admin.Unblock, "portsentry-nft fleet
//     unblock"), lifts every host's block of addr that began before it
//     (Sink.FleetUnblock, Lift.Admin), and each host purges its own older
//     record. A host's, <host>.<addr> (Client.Unblock, "portsentry-nft
//     unblock" on that host), lifts only that host's block: every
//     receiver drops that host's record, and tells its Sink only once no
//     other record (another host's, or its own) holds the address. Times
//     are the servers' timestamps of the records.
//   - A sighting is a tripwire probe that did not block (Client.Sighting).
//     The hosts that count the sightings watch the bucket and count in
//     memory, bounded (correlate.go, tally.go): no request per sighting.
//     With fleet.correlate.counters empty every host with correlation on
//     counts, and blocks an address on its own count once
//     fleet.correlate.hosts distinct hosts saw it; with counters named,
//     each counter that counts them publishes a block of origin
//     "correlate", and a host enforces one once a majority of the
//     counters did (quorum.go).
//   - A host's record in portsentry_hosts lists its own addresses
//     (Client.SetOwnAddresses), for people to read. It protects nothing: a
//     host's claim about itself is what a compromised host would forge to
//     make a scanner immune. A host watches its own record only (to write
//     it again when it is gone), not the N others'.
//
// # What a receiver believes
//
// A receiver trusts a record only as far as it can check it, never for
// what the record says about itself:
//
//   - Whose it is: the host of its key (Block.Host), which the servers'
//     permissions vouch for; Block.Admin when that is the administrator.
//     A record's host and address are read from its key, never from its
//     value.
//   - Evidence (Block.Evidence: forgeable, handshake, admin) is the
//     publishing host's claim, passed on for the decision to weigh as
//     that host's word; records without one (older versions) read as
//     forgeable.
//   - A correlated block (origin correlate) is enforced only when this
//     host counted, from the sighting keys of its address (each written
//     under its own host's identity), at least fleet.correlate.hosts
//     distinct hosts, or when a majority of the named counters hold a
//     correlated record of it (Block.Corroborated). Any other host's
//     correlated record is refused; the Seen list a record states is not
//     counted.
//   - How long: a record whose expiry lies more than fleet.max_timeout
//     (plus a minute for the clocks) after its creation on the servers is
//     refused, not shortened: a host that writes one with no TTL, or
//     Nats-TTL "never" (which outlives MaxAge), gets nothing for it.
//   - No host enforces a fleet block of an address Options.Protected
//     protects (the daemon's guard: local addresses, gateways,
//     nameservers, never_block, and the fleet's own hosts and servers as
//     this host's fleet.hosts and fleet.servers list them), or of a
//     loopback, link-local, multicast or unspecified address.
//
// Refused records are counted (Stats.Refused) and logged once per address,
// ten lines a second at most.
//
// Timeouts read from the fleet are also capped at now + fleet.max_timeout.
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
// go after every other write, at most sightingRate a second: a spoofed
// flood makes one per source, and must not delay a block nor flood the
// cluster (see outbox).
// After a failure nothing is sent before the backoff ends, however many
// writes arrive meanwhile, unless the connection just came back.
//
// # Watching
//
// A watcher (watcher.go) is one generation of watches, one per bucket
// watched (this host's own record of hosts, lifts, blocks, and the
// sightings on a host that counts them: each an ordered consumer that delivers the current values, then
// the updates), made on one connection and listed in one table
// (watchedBuckets, sightingsWatch) with the functions that apply its
// bucket's records. On a reconnect, or when a watch closes or stalls, a
// new generation is made with backoff (after a reconnect, a random wait
// of up to resumeJitter) and resumes each bucket after the last revision
// this host handled: it delivers what the host missed, not the buckets
// again (a bucket made anew, or that lost records past that revision, is
// replayed in full; keys that vanished from it meanwhile are forgotten).
// The view ends what it holds at its own time (expiry.go), so a resumed
// watch that missed an expiry marker leaves nothing behind. Revisions
// already applied are skipped. Once a bucket is replayed, its consumer is
// stopped and the host follows the records the servers republish on a core
// subject (live.go: LivePrefix, the streams' RePublish): the cluster fans
// a record out to every host as any core message, at a fraction of a
// consumer's cost per host, and a skipped sequence makes a new generation,
// which catches up through a consumer. Then the updates of every bucket
// arrive on one channel. Whether the server is alive is judged by any inbound
// message, or a PONG when there is none (liveness.go); the stall check
// (stall.go) is rare. The first complete replay closes Ready (the
// sightings' current values are counted after it, with the updates).
// What this host knows of the other hosts' records is its view (view.go;
// one record per address, addrtable.go). The Sink is called from the
// watching goroutine only.
//
// # Buckets, limits and permissions
//
// The servers bound the buckets whatever a host writes (buckets.go):
// MaxBytes sized per host of the fleet (new writes are refused beyond),
// MaxAge on blocks, lifts and sightings, and the account's max_file and
// max_mem in deploy/nats bound them all. These limits are per bucket and
// per account, not per host: a compromised host can fill a bucket up to
// its MaxBytes, and the others' new writes to it fail until records age
// out or the administrator removes that host's.
//
// The administrator creates or updates the buckets with their limits
// (Admin.Setup, "portsentry-nft fleet setup"); a host creates one that is
// missing (it needs $JS.API.STREAM.CREATE.KV_<bucket> for the four
// buckets, nothing else of the stream API that changes or deletes), sized
// for DefaultFleetSize hosts, and says so when a bucket it binds to has no
// limits. Admin is the administrator's one-shot connection: block,
// unblock, list and setup, with no daemon.
//
// # Leaf nodes
//
// With fleet.domain and fleet.local_domain (leaf.go, deploy/nats/leaf) a
// host logs in to its site's leaf server: it writes to the buckets of the
// hub's JetStream domain and watches its leaf's copies of them (mirrors,
// with the hub's revisions), so the hub delivers each record once per
// site, and a site cut off from the hub keeps what its copy holds.
package fleet
