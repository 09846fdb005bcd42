# Deployment: install, the .deb, and the system-tier tests (a Debian 12
# guest booted with systemd-nspawn). Included by the Makefile, which
# defines GO, BIN, LDFLAGS and apt_install.
#
#   make install [PREFIX=/usr/local] [DESTDIR=]  binary, unit, man pages, shell completions, default config (0600)
#   make deb                                     bin/portsentry-nft_VERSION_ARCH.deb (nfpm)
#   make rootfs                                  the guest's root file system, cached
#   make e2e-system                              the system tier (root)
#   make lint-deploy                             yamllint, ansible-lint, systemd-analyze, lintian

PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions

UNIT       := deploy/systemd/portsentry-nft.service

NFPM       ?= $(GO) tool nfpm
DEB_ARCH   ?= $(shell $(GO) env GOARCH)
# Debian version: a v-tag without its v (v1.2.3-4-gabc -> 1.2.3+4+gabc), or
# 0.0~gitDATE.COMMIT before the first tag.
DEB_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-/+/g'); \
	[ -n "$$v" ] || v=0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0).$$(git rev-parse --short=12 HEAD 2>/dev/null || echo 0); \
	echo $$v)
# deploy/package/nfpm.yaml reads the staged files from here.
DEB_STAGE  := bin/deb
DEB        := bin/portsentry-nft_$(DEB_VERSION)_$(DEB_ARCH).deb
# The changelog's one entry: the commit built, dated by the commit (the
# same tree builds the same .deb), signed by nfpm.yaml's maintainer.
DEB_MAINTAINER := $(shell sed -n 's/^maintainer: //p' deploy/package/nfpm.yaml)
DEB_COMMIT     := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DEB_DATE       := $(shell LC_ALL=C date -u -R -d @$$(git log -1 --format=%ct 2>/dev/null || echo 0))

# The guest's root file system (debootstrap, 1-3 min) is cached as a tarball
# outside the tree; its name carries a hash of the script that makes it.
ROOTFS_CACHE ?= $(HOME)/.cache/portsentry-nft
ROOTFS_ID    := $(shell sha256sum internal/systemtest/mkrootfs.sh 2>/dev/null | cut -c1-12)
ROOTFS_TAR   ?= $(ROOTFS_CACHE)/debian12-rootfs-$(ROOTFS_ID).tar.zst
# Empty: debootstrap's default mirror.
DEBIAN_MIRROR ?=

# Debian packages the system tier needs on the host.
SYSTEM_TEST_PKGS := debootstrap systemd-container zstd ansible ansible-lint yamllint nmap iproute2 nftables man-db lintian

.PHONY: install deb rootfs e2e-system deps-system lint-deploy

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(SYSCONFDIR)/portsentry-nft
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/portsentry-nft
	sed 's|/usr/sbin/portsentry-nft|$(SBINDIR)/portsentry-nft|g' $(UNIT) >$(DESTDIR)$(UNITDIR)/portsentry-nft.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/portsentry-nft.service
	install -m 0644 deploy/man/portsentry-nft.8 $(DESTDIR)$(MANDIR)/man8/portsentry-nft.8
	install -m 0644 deploy/man/portsentry-nft.yaml.5 $(DESTDIR)$(MANDIR)/man5/portsentry-nft.yaml.5
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	$(BIN) completion bash >$(DESTDIR)$(BASHCOMPDIR)/portsentry-nft
	$(BIN) completion zsh >$(DESTDIR)$(ZSHCOMPDIR)/_portsentry-nft
	chmod 0644 $(DESTDIR)$(BASHCOMPDIR)/portsentry-nft $(DESTDIR)$(ZSHCOMPDIR)/_portsentry-nft
	@# An existing configuration is never overwritten. A new one is root's
	@# alone: it may come to hold the fleet's password, and an edit keeps the mode.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/portsentry-nft/portsentry.yaml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/portsentry-nft/portsentry.yaml"; \
	else \
		install -m 0600 internal/config/default.yaml $(DESTDIR)$(SYSCONFDIR)/portsentry-nft/portsentry.yaml; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; \
		echo "installed; start it with: systemctl enable --now portsentry-nft"; fi

deb:
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)
	@# No cgo, and position-independent (ASLR): no library but the dynamic
	@# loader, which relocates it.
	CGO_ENABLED=0 $(GO) build -buildmode=pie -trimpath -ldflags '$(LDFLAGS)' -o $(DEB_STAGE)/portsentry-nft ./cmd/portsentry-nft
	gzip -9n -c deploy/man/portsentry-nft.8 >$(DEB_STAGE)/portsentry-nft.8.gz
	gzip -9n -c deploy/man/portsentry-nft.yaml.5 >$(DEB_STAGE)/portsentry-nft.yaml.5.gz
	$(DEB_STAGE)/portsentry-nft completion bash >$(DEB_STAGE)/completion.bash
	$(DEB_STAGE)/portsentry-nft completion zsh >$(DEB_STAGE)/completion.zsh
	printf '%s\n' 'portsentry-nft ($(DEB_VERSION)) unstable; urgency=medium' '' \
		'  * Built from https://github.com/portsentry-nft/portsentry-nft' \
		'    commit $(DEB_COMMIT);' \
		'    its changes are that repository'"'"'s history (git log).' '' \
		' -- $(DEB_MAINTAINER)  $(DEB_DATE)' | gzip -9n >$(DEB_STAGE)/changelog.gz
	rm -f bin/portsentry-nft_*.deb
	VERSION='$(DEB_VERSION)' ARCH='$(DEB_ARCH)' \
		$(NFPM) package --config deploy/package/nfpm.yaml --packager deb --target $(DEB)
	@echo "built $(DEB)"

rootfs: $(ROOTFS_TAR)

$(ROOTFS_TAR):
	$(call apt_install,debootstrap zstd)
	rm -f $(ROOTFS_CACHE)/debian12-rootfs-*.tar.zst
	./internal/systemtest/mkrootfs.sh $@ $(DEBIAN_MIRROR)

deps-system:
	$(call apt_install,$(SYSTEM_TEST_PKGS))

# The system tier: the .deb installed and the Ansible role applied in
# booted Debian 12 guests (internal/systemtest). Root.
e2e-system: deps-system deb rootfs
	PORTSENTRY_SYSTEM_TESTS=1 PORTSENTRY_DEB=$(abspath $(DEB)) PORTSENTRY_BINARY=$(abspath $(DEB_STAGE)/portsentry-nft) \
		PORTSENTRY_ROOTFS=$(ROOTFS_TAR) \
		$(GO) test -count=1 -v -timeout 15m ./internal/systemtest

# The deployment files' linters alone, lintian on the .deb included
# (e2e-system runs them too).
lint-deploy: deps-system deb
	PORTSENTRY_SYSTEM_TESTS=1 PORTSENTRY_DEB=$(abspath $(DEB)) \
		$(GO) test -count=1 -run 'Lint|Unit|Man' -v ./internal/systemtest
