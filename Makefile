# Two commands do all set-up from a fresh clone:  `make app`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := espeak-ng ffmpeg

.PHONY: app test system

app: $(VENV)/.installed
	$(PY) app.py $(ARGS)

test: $(VENV)/.installed system
	$(PY) -m pytest -q $(ARGS)

# Speech synthesis for tests and corpora, and ffmpeg for formats libsndfile can't read.
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(SYSTEM_PACKAGES); \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@
