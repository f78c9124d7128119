# CineSync: `make run` serves on embedded defaults, `make test` runs the tests; both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Reinstalled when the metadata or a proto changes: setup.py builds the gRPC stubs (cinesync/v1/) then.
PROTO := protos/cinesync/v1/recommendation.proto protos/cinesync/v1/admin.proto
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py $(PROTO) | cksum | cut -d' ' -f1)

.PHONY: setup run serve test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(PROTO)
	@command -v redis-server >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) ; } \
	  || echo "note: no redis-server binary; CineSync will need a Redis answering at REDIS_URL"
	@command -v prometheus >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ; } \
	  || echo "note: no prometheus binary; the test that scrapes the stack with Prometheus will be skipped"
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null ; } \
	  || echo "note: no chromium/chromedriver; the console's browser test will fail until Debian's chromium is installed"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'  # byte-compiled here: PYTHONDONTWRITEBYTECODE may be set
	$(PY) deploy/install_helm.py $(VENV)/bin/helm  # a real helm for the chart's tests
	rm -f $(VENV)/.installed-*
	touch $@

run: setup
	$(VENV)/bin/cinesync up

serve: setup  # serve the current published version, no training
	$(VENV)/bin/cinesync serve

# Tests run in TEST_WORKERS xdist processes, a test file to each at a time (its module fixtures
# start servers once), in collection order: the files that start the most come first.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup
	$(PY) -m pytest $(XDIST)

test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict control_plane
	$(VENV)/bin/mypy recsys workers exporters launcher cinesync federated bench

clean:
	rm -rf var model_repository/*/ .model_repository.staging
