# sheep-runtime. `make run` is the main job, `make test` runs every test tier.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# runc starts containers; golang-github-containers-common ships the default seccomp profile;
# busybox-static makes the demo's `minimal` image.
APT_PACKAGES := iproute2 iputils-ping util-linux nftables libnftables1 python3-venv procps \
  runc golang-github-containers-common prometheus busybox-static
# What the tests need besides: podman and the CNI plugins (the CNI tier and baselines),
# busybox-static (podman's rootfs), openssl (mTLS recipes), gcc (a containment test),
# systemd (systemd-analyze), etcd (the cluster lab). Node.js comes from `make node`.
TEST_APT_PACKAGES := podman containernetworking-plugins busybox-static openssl gcc systemd \
  etcd-server etcd-client
# The baselines `make bench` measures against (netavark: attach; podman and runc: creation).
BENCH_APT_PACKAGES := containernetworking-plugins dnsmasq-base etcd-server etcd-client \
  netavark podman runc busybox-static
PROTO := proto/sheep/runtime/v1/runtime.proto
STATE_DIR ?= $(or $(SHEEP_STATE_DIR),/var/lib/sheep)
RUN_DIR ?= $(or $(SHEEP_RUN_DIR),/run/sheep)
# `make install` links the commands into $(DESTDIR)$(PREFIX)/bin; the unit goes to
# $(DESTDIR)$(UNITDIR) with ExecStart=$(PREFIX)/bin/sheepd.
PREFIX ?= /usr/local
UNITDIR ?= /etc/systemd/system
BINDIR = $(DESTDIR)$(PREFIX)/bin
VENV_BIN = $(abspath $(VENV))/bin
COMMANDS := sheepd sheepctl sheep-cni
UNIT := deploy/systemd/sheepd.service
UNIT_SED := s|/usr/local/bin/sheepd|$(PREFIX)/bin/sheepd|g
SYSTEMCTL ?= systemctl

.PHONY: apt-test venv install uninstall install-systemd uninstall-systemd install-cni apt proto check-proto api-docs check-api node run stop observe observe-stop check-dashboard test test-fast unit lint bench clean

venv: $(VENV)/.installed

# The commands (those the venv has) where a shell finds them: symlinks into the venv.
# A file there that is not our link is never replaced; `make uninstall` removes
# exactly these links.
install: venv
	@mkdir -p $(BINDIR)
	@for c in $(COMMANDS); do \
	  [ -x $(VENV_BIN)/$$c ] || continue; \
	  dest=$(BINDIR)/$$c; \
	  if { [ -e $$dest ] || [ -L $$dest ]; } && [ "$$(readlink $$dest)" != $(VENV_BIN)/$$c ]; then \
	    echo "$$dest exists and is not a link to $(VENV_BIN)/$$c: not replacing it" >&2; \
	    exit 1; \
	  fi; \
	  ln -sfn $(VENV_BIN)/$$c $$dest && echo "$$dest -> $(VENV_BIN)/$$c"; \
	done
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; \
	  *) echo "note: $(PREFIX)/bin is not on your PATH";; esac

uninstall:
	@for c in $(COMMANDS); do \
	  dest=$(BINDIR)/$$c; \
	  if [ -L $$dest ] && [ "$$(readlink $$dest)" = $(VENV_BIN)/$$c ]; then \
	    rm -f $$dest && echo "removed $$dest"; \
	  fi; \
	done

# The systemd unit, pointing at $(PREFIX)/bin/sheepd. Start it with
# `systemctl enable --now sheepd`; `make uninstall-systemd` removes it if unchanged.
install-systemd: install
	@mkdir -p $(DESTDIR)$(UNITDIR)
	@sed '$(UNIT_SED)' $(UNIT) | install -m 0644 /dev/stdin $(DESTDIR)$(UNITDIR)/sheepd.service
	@echo "$(DESTDIR)$(UNITDIR)/sheepd.service installed"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(SYSTEMCTL) daemon-reload; \
	  echo "start it: systemctl enable --now sheepd"; fi

uninstall-systemd:
	@unit=$(DESTDIR)$(UNITDIR)/sheepd.service; \
	if [ -f $$unit ] && sed '$(UNIT_SED)' $(UNIT) | cmp -s - $$unit; then \
	  if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	    $(SYSTEMCTL) disable --now sheepd 2>/dev/null || true; fi; \
	  rm -f $$unit && echo "removed $$unit"; \
	  if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(SYSTEMCTL) daemon-reload; fi; \
	elif [ -e $$unit ]; then echo "$$unit differs from $(UNIT): left in place" >&2; fi

# The CNI plugin as /opt/cni/bin/sheep (one stdlib-only file, run by /usr/bin/python3)
# and the example conflist; an existing conflist that differs is left in place.
install-cni:
	@install -D -m 0755 sheep_runtime/cni/plugin.py $(DESTDIR)/opt/cni/bin/sheep
	@echo "$(DESTDIR)/opt/cni/bin/sheep installed"
	@conf=$(DESTDIR)/etc/cni/net.d/10-sheep.conflist; \
	if [ -e $$conf ] && ! cmp -s deploy/cni/10-sheep.conflist $$conf; then \
	  echo "$$conf differs from deploy/cni/10-sheep.conflist: left in place" >&2; \
	else install -D -m 0644 deploy/cni/10-sheep.conflist $$conf && echo "$$conf installed"; fi

apt:
	@scripts/apt-install.sh $(APT_PACKAGES)

apt-test:
	@scripts/apt-install.sh $(TEST_APT_PACKAGES)

$(VENV)/.installed: pyproject.toml clients/python/pyproject.toml | apt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The client too: sheepctl, and the tests drive the daemon through it.
	$(PY) -m pip install -q -e clients/python
	touch $@

# The generated code has two homes, so that neither package needs the other: the
# client's `sheep.runtime.v1` and the daemon's `sheep_runtime.api.v1` (same descriptor,
# so both load in one process). scripts/gen-proto.sh writes both; --check compares.
proto: venv
	@scripts/gen-proto.sh $(PY)

check-proto: venv
	@scripts/gen-proto.sh $(PY) --check

api-docs: venv
	$(PY) scripts/gen-api-docs.py

check-api: venv
	$(PY) scripts/gen-api-docs.py --check && $(PY) scripts/gen-api-docs.py --compat

node:
	@command -v npm >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd clients/node && npm install --no-audit --no-fund

run: install
	@PREFIX=$(PREFIX) scripts/run-demo.sh

stop:
	@pid=$$(cat $(STATE_DIR)/sheepd.lock 2>/dev/null); \
	[ -n "$$pid" ] && kill $$pid && echo "sheepd ($$pid) stopped" || echo "sheepd is not running"

observe: venv
	@scripts/observe.sh start

observe-stop:
	@scripts/observe.sh stop

check-dashboard:
	@scripts/check-dashboard.sh

lint: venv
	$(VENV)/bin/ruff check sheep_runtime clients/python/sheep_client tests bench scripts
	$(VENV)/bin/mypy sheep_runtime clients/python/sheep_client
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest tests/unit -q

# The fast tier: unit tests and the real ops layer over in-memory fakes (tests/ops),
# run with no capabilities at all, so nothing in it can touch the kernel.
test-fast: venv
	setpriv --bounding-set=-all --inh-caps=-all --no-new-privs -- \
	  $(PY) -m pytest tests/unit tests/ops tests/dns/test_names.py \
	  tests/images/test_ops.py -q -p no:cacheprovider

test: venv apt-test check-proto check-api lint
	$(PY) -m pytest tests -q -rfEs -p no:cacheprovider

bench: venv
	@scripts/apt-install.sh $(BENCH_APT_PACKAGES)
	$(PY) bench/bench_ipam.py
	$(PY) bench/bench_attach.py
	$(PY) bench/bench_cni.py
	$(PY) bench/bench_dns.py
	$(PY) bench/bench_firewall.py
	$(PY) bench/bench_cluster.py
	$(PY) bench/bench_create.py
	$(PY) bench/bench_loop.py

clean: uninstall
	rm -rf $(VENV) build *.egg-info clients/python/*.egg-info
