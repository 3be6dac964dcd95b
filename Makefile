# The two commands a newcomer needs (see README.md):
#   make drill  three local regions: a regional outage evacuated and failed back, a report
#   make test   the whole test suite, with every set-up step on a fresh machine
#
# Set-up is idempotent and cached: the virtualenv is rebuilt only when pyproject.toml
# changes, the control plane is built once per set of pinned versions into
# ~/.cache/regionshift (outside the repository), Prometheus comes from Debian's package.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: drill demo test setup prometheus controlplane crds

drill: setup prometheus controlplane
	$(VENV)/bin/regionshift drill $(DRILL_ARGS)

demo: setup controlplane
	$(VENV)/bin/regionshift demo

test: setup prometheus controlplane
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing Prometheus from Debian's package"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

controlplane: setup
	$(VENV)/bin/regionshift cluster build

crds: setup
	$(VENV)/bin/regionshift crds
