# The two commands: `make run` and `make test`. Everything they need is installed from this repo's files.
VENV    ?= .venv
PY      := $(VENV)/bin/python
BRIDGE  := $(VENV)/bin/bridge
STAMP   := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
PEERS   := tests/peers/.installed
export BRIDGE_CONFIG ?= etc/bridge.toml

.PHONY: run demo test lint unit integration deps venv clean docs docs-gen docs-check

run: $(STAMP)
	$(BRIDGE) db upgrade
	$(BRIDGE) demo load --if-empty
	$(BRIDGE) run

# The appliance with local stand-ins (SMSC simulator, SIPp phones that talk), IC1 texted as the demo subscriber.
demo: $(STAMP) $(PEERS)
	$(BRIDGE) demo run

test: $(STAMP) $(PEERS) lint docs-check
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check bridge web tests bench
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration"

integration: $(STAMP) $(PEERS)
	$(PY) -m pytest -q -m integration

# The manual (docs/, MkDocs): `make docs` regenerates the generated references and builds build/site/ in strict
# mode; `make docs-check` (part of `make test`) fails on a stale reference, a broken link or a page not in the nav.
# (No --quiet: it hides the warnings that strict mode counts.)
docs: $(DOCS_STAMP)
	$(PY) -m bridge.docgen
	@out=$$($(VENV)/bin/mkdocs build --strict 2>&1) || { echo "$$out"; exit 1; }
	@echo "manual: build/site/index.html"

docs-gen: $(STAMP)
	$(PY) -m bridge.docgen

docs-check: $(DOCS_STAMP)
	$(PY) -m bridge.docgen --check
	@tmp=$$(mktemp -d); out=$$($(VENV)/bin/mkdocs build --strict --site-dir $$tmp 2>&1); rc=$$?; rm -rf $$tmp; \
	  if [ $$rc -ne 0 ]; then echo "$$out"; exit $$rc; fi; echo "mkdocs build --strict: ok"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $@

# Real peers for the integration tests: SIPp, baresip, OpenSSH, rsync, Chromium, espeak-ng, node smpp.
deps: $(PEERS)
$(PEERS): tests/peers/install.sh tests/peers/package.json
	tests/peers/install.sh
	touch $@

clean:
	rm -rf $(VENV) build/site tests/peers/node_modules $(PEERS) .mypy_cache .ruff_cache .pytest_cache
