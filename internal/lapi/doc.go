// Package lapi pushes this host's blocks to a CrowdSec local API (LAPI)
// as alerts, so that CrowdSec's console, its notifications and every
// bouncer of that LAPI learn of the scanners this host caught.
//
// It logs in as a CrowdSec machine (POST /v1/watchers/login with a
// machine_id and password gives a JWT, taken again when it expires or a
// request is refused with 401) and sends alerts with POST /v1/alerts, in
// the shapes of CrowdSec's pkg/models/localapi_swagger.yaml.
//
// A Pusher is a ledger.Follower. Only a block that may leave this host is
// pushed, by decide's rule (decide.Reach.Beyond, the rule the fleet and
// remote bouncers follow): never one resting on probes anyone can forge.
// A pushed alert carries a ban decision (the block's time left) when its
// evidence may bind another system (decide.Evidence.Binding); an
// administrator's unblock of a pushed block lifts that ban (DELETE
// /v1/decisions, this program's ban of the address only).
//
// The ledger never waits for the LAPI: Blocked puts a copy of the record
// in a bounded queue, or drops it (counted) when the queue is full; one
// goroutine sends the queue in batches, and retries a batch with backoff
// while the LAPI is down. A dead LAPI costs this host the queue's memory
// and nothing else.
package lapi
