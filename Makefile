# The two commands: `make run` and `make test`. Everything they need is installed from this repo's files.
VENV    ?= .venv
PY      := $(VENV)/bin/python
BRIDGE  := $(VENV)/bin/bridge
STAMP   := $(VENV)/.installed
PEERS   := tests/peers/.installed
export BRIDGE_CONFIG ?= etc/bridge.toml

.PHONY: run demo test lint unit integration deps venv clean

run: $(STAMP)
	$(BRIDGE) db upgrade
	$(BRIDGE) demo load --if-empty
	$(BRIDGE) run

# The appliance with local stand-ins (SMSC simulator, SIPp phones that talk), IC1 texted as the demo subscriber.
demo: $(STAMP) $(PEERS)
	$(BRIDGE) demo run

test: $(STAMP) $(PEERS) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check bridge web tests bench
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration"

integration: $(STAMP) $(PEERS)
	$(PY) -m pytest -q -m integration

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Real peers for the integration tests: SIPp, baresip, OpenSSH, rsync, Chromium, espeak-ng, node smpp.
deps: $(PEERS)
$(PEERS): tests/peers/install.sh tests/peers/package.json
	tests/peers/install.sh
	touch $@

clean:
	rm -rf $(VENV) tests/peers/node_modules $(PEERS) .mypy_cache .ruff_cache .pytest_cache
