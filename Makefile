# portsentry-nft. The two commands of the README's quick start:
#   make demo   builds and runs the daemon against an nmap scan in two namespaces
#   make test   runs every test, privileged ones included (as root)
# Both install the Debian packages they need when they are missing.

GO        ?= go
BIN       := bin/portsentry-nft
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Tools are pinned in go.mod (tool directives) and run with `go tool`:
# nothing depends on a binary installed by hand.
STATICCHECK := $(GO) tool staticcheck

# The fleet sizes make bench simulates (BenchmarkFleetScale), and the
# sites of its leaf topology (a leaf server each).
FLEET_SCALE_N ?= 10,100,300,1000
FLEET_SCALE_SITES ?= 4

RUN_PKGS  := nftables nmap iproute2
TEST_PKGS := nftables nmap hping3 masscan zmap ncat iproute2 procps python3 python3-scapy util-linux zsh
# prometheus (and its promtool) for the metrics test, without the recommended
# exporters; crowdsec-firewall-bouncer for the bouncer API test, without
# the crowdsec it recommends (that test needs none); crowdsec, whose local
# API the LAPI test runs with a configuration of its own. Their own
# services are not left running on the test host: the tests run them.
# crowdsec's postinst registers with CrowdSec's online API unless
# /etc/crowdsec/online_api_credentials.yaml already holds something (its
# README.Debian): with no internet the registration fails the install, so
# the file is given a comment first.
TEST_PKGS_NORECOMMENDS := prometheus crowdsec-firewall-bouncer crowdsec

.PHONY: all build demo demo-fleet test unit lint fuzz bench soak deps-run deps-test clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/portsentry-nft

# apt-get install only what is missing (dpkg -s is quick and offline).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps-run:
	$(call apt_install,$(RUN_PKGS))

deps-test:
	$(call apt_install,$(TEST_PKGS))
	@if ! dpkg -s $(TEST_PKGS_NORECOMMENDS) >/dev/null 2>&1; then \
		echo "installing: $(TEST_PKGS_NORECOMMENDS) (no recommends; their services stopped and disabled)"; \
		if [ ! -s /etc/crowdsec/online_api_credentials.yaml ]; then mkdir -p /etc/crowdsec && echo '# no Central API: the tests run offline' > /etc/crowdsec/online_api_credentials.yaml; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_PKGS_NORECOMMENDS) >/dev/null; \
		if [ -d /run/systemd/system ]; then for u in $(TEST_PKGS_NORECOMMENDS); do systemctl disable --now $$u >/dev/null 2>&1 || true; done; fi; \
	fi

demo: deps-run build
	BIN=$(BIN) ./deploy/demo/demo.sh

# Three hosts and the 3-node NATS cluster of deploy/nats in namespaces: a
# forged SYN at h1 stays on h1; a scanner that probes h1 and h2, and an
# administrator's block, are on all three. The server is the one pinned
# in go.mod (a tool), built into bin/.
demo-fleet: deps-run build
	$(call apt_install,hping3)
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	BIN=$(BIN) NATS=bin/nats-server ./deploy/demo/demo-fleet.sh

# Every test: unit tests, fuzz seed corpora, kernel-tier tests in network
# namespaces (root), after gofmt, go vet and staticcheck.
test: deps-test lint
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) e2e-system

unit:
	$(GO) test ./...

lint:
	@out=$$(gofmt -l cmd internal); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Each fuzz target for 60 s (not part of make test).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run=NONE -fuzz="^$$f$$" -fuzztime=60s $$pkg || exit 1; \
		done; \
	done

# Benchmarks: decoder and detector micro-benchmarks, the p99 a 10k fleet
# batch and a 10k adoption add to a detected block's wait for the ledger
# (goal: 5 ms at most; the same run measures it alone), then the kernel-tier
# probe-to-block latency and idle RSS, and the ports nmap and masscan learn
# before the block (captured with tcpdump) (root).
bench: deps-test
	$(call apt_install,netsniff-ng masscan tcpdump)
	$(GO) test -run=NONE -bench=. -benchmem ./internal/packet ./internal/detect
	$(GO) test -run=NONE -bench=DetectedBlockDuringBatch -benchtime=1x -count=3 ./internal/ledger
	$(GO) test -run=NONE -bench=Report -benchtime=1x -timeout=20m ./internal/e2e
	@mkdir -p bin
	FLEET_SCALE_N=$(FLEET_SCALE_N) FLEET_SCALE_SITES=$(FLEET_SCALE_SITES) $(GO) test -run='^$$' -bench=FleetScale -benchtime=1x -timeout=60m ./internal/fleet > bin/fleetscale.txt; \
		status=$$?; cat bin/fleetscale.txt; exit $$status
	{ echo; echo "## Fleet scale"; echo; echo "BenchmarkFleetScale: N simulated hosts, each a real fleet client, in one process, against real nats-server processes on this machine: the 3-node cluster of deploy/nats, and the hub of 3 servers with $(FLEET_SCALE_SITES) leaf servers of deploy/nats/leaf, the hosts spread over the sites (servers' CPU as hub + leaves). Every latency is an upper bound; the CPU per delivery is the figure to extrapolate; idle CPU is per host and second. The join: a new host started while the fleet holds 10k blocks more, until it holds every block. Goals at N = 1000: p99 <= 100 ms at 5 blocks/s, a 1000-block burst on every host within 10 s, cold start <= 15 s, idle <= 0.1 API requests/s per host, 0 reconnects. At N >= 300 the cluster runs again with a consumer per host (its buckets without republish, as an older version made them): the baseline of the republished records. Past 20 hosts three hosts count the sightings."; echo; grep '^|' bin/fleetscale.txt; echo; grep -E 'one block at 20/s|less the idle CPU|buckets followed live' bin/fleetscale.txt | sed 's/^/- /'; } >> BENCHMARKS.md

# 10 minutes of mixed scans and floods against one daemon: goroutines,
# open files and RSS must not grow (SOAK_DURATION=2m for a shorter run).
soak: deps-test
	SOAK_DURATION=$(or $(SOAK_DURATION),10m) $(GO) test -run=NONE -bench=Soak -benchtime=1x -timeout=30m ./internal/e2e

clean:
	rm -rf bin
include mk/deploy.mk
