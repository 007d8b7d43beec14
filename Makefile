# sheep-runtime. `make run` is the main job, `make test` runs every test tier.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := iproute2 iputils-ping util-linux nftables libnftables1 python3-venv procps \
  prometheus
PROTO := proto/sheep/runtime/v1/runtime.proto
STATE_DIR ?= $(or $(SHEEP_STATE_DIR),/var/lib/sheep)
RUN_DIR ?= $(or $(SHEEP_RUN_DIR),/run/sheep)

.PHONY: install apt proto check-proto api-docs check-api node run stop observe observe-stop check-dashboard test unit lint bench clean

install: $(VENV)/.installed

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

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
proto: install
	@scripts/gen-proto.sh $(PY)

check-proto: install
	@scripts/gen-proto.sh $(PY) --check

api-docs: install
	$(PY) scripts/gen-api-docs.py

check-api: install
	$(PY) scripts/gen-api-docs.py --check && $(PY) scripts/gen-api-docs.py --compat

node:
	@command -v npm >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	cd clients/node && npm install --no-audit --no-fund

run: install
	@scripts/run-demo.sh

stop:
	@pid=$$(cat $(STATE_DIR)/sheepd.lock 2>/dev/null); \
	[ -n "$$pid" ] && kill $$pid && echo "sheepd ($$pid) stopped" || echo "sheepd is not running"

observe: install
	@scripts/observe.sh start

observe-stop:
	@scripts/observe.sh stop

check-dashboard:
	@scripts/check-dashboard.sh

lint: install
	$(VENV)/bin/ruff check sheep_runtime clients/python/sheep_client tests bench scripts
	$(VENV)/bin/mypy sheep_runtime clients/python/sheep_client
	$(VENV)/bin/lint-imports

unit: install
	$(PY) -m pytest tests/unit -q

test: install check-proto check-api lint
	$(PY) -m pytest tests -q -p no:cacheprovider

bench: install
	$(PY) bench/bench_ipam.py
	$(PY) bench/bench_attach.py

clean:
	rm -rf $(VENV) build *.egg-info clients/python/*.egg-info
