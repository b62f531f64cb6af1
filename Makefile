# vlm_agent: the two commands. Both bootstrap everything they need, idempotently:
#   make demo   the main job: embedded MuJoCo sim + the full ROS 2 graph + default models
#   make test   the whole test suite (what CI runs through .ci/run)
# On a robot with ROS 2 from apt, use colcon instead (see README); this venv is the standalone path.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.vlm_agent_installed
REQS := requirements/constraints.txt requirements/ros.txt requirements/base.txt requirements/test.txt setup.py
# Debian packages: libusb for pyrealsense2; Mesa EGL/GLES (llvmpipe) for headless MuJoCo rendering.
DEB_PACKAGES := libusb-1.0-0 libegl1 libgles2 libgl1-mesa-dri libegl-mesa0
PYTEST_ARGS ?=

.PHONY: demo test deps system-deps lock clean-venv help

help:
	@echo "make demo   run the embedded-sim demo (sets everything up first)"
	@echo "make test   run the whole test suite (sets everything up first)"

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	  else \
	    echo "ERROR: missing Debian packages:$$missing"; \
	    echo "       run: sudo apt-get install -y$$missing   (then re-run make)"; exit 1; \
	  fi; \
	fi

$(STAMP): $(REQS)
	@$(MAKE) --no-print-directory system-deps
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "vlm_agent needs Python 3.11 (got %s)" % sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements/constraints.txt -r requirements/ros.txt -r requirements/base.txt -r requirements/test.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

deps: $(STAMP)

test: $(STAMP)
	@rc=0; $(PY) -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc = 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

demo: $(STAMP)
	$(VENV)/bin/vlm-agent demo

# Re-resolve requirements/*.txt and write the full lock into constraints.txt (torch stays 2.13.0).
lock: $(STAMP)
	@{ sed -n '1,/^# Regenerate/p' requirements/constraints.txt; \
	   $(PIP) freeze --exclude-editable | grep -v '^vlm.agent' | sed 's/+cpu$$//'; } > requirements/constraints.new
	@mv requirements/constraints.new requirements/constraints.txt

clean-venv:
	rm -rf $(VENV)
