# Two commands do all set-up from a fresh clone:  `make app`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := espeak-ng ffmpeg chromium openssh-client openssh-server rsync asterisk-core-sounds-en-wav

.PHONY: app test system train-deps

app: $(VENV)/.installed
	$(PY) app.py $(ARGS)

test: $(VENV)/.installed system
	$(PY) -m pytest -q $(ARGS)

# Speech synthesis for tests and corpora, ffmpeg for formats libsndfile can't read, Debian's
# chromium (/usr/bin/chromium) for the app's browser test, and ssh, sshd (/usr/sbin/sshd) and rsync
# for train/remote.py and its test, which runs its own sshd on loopback (the package also enables
# the system's ssh service, as installing openssh-server always does). Checked as packages, not as
# commands on the PATH: another "chromium" there (a snap, a download) is not the binary the test drives.
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(SYSTEM_PACKAGES); \
	fi

# What train/make_corpus.py needs beyond the app: Debian's voices and sox, the text sources, and the
# neural voices in requirements-train.txt (whose header lists the same packages).
CORPUS_PACKAGES := espeak-ng flite festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k sox \
  libsox-fmt-all fortunes fortunes-min fortunes-bofh-excuses fortunes-debian-hints wordnet-base wamerican

train-deps: $(VENV)/.installed
	@$(MAKE) --no-print-directory system SYSTEM_PACKAGES="$(SYSTEM_PACKAGES) $(CORPUS_PACKAGES)"
	$(PY) -m pip install -q -r requirements-train.txt

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@
