# Entry points named in the README. VENV can be overridden: make test VENV=/path/to/venv
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install test demo demo-smoke data clean-demo

install:
	bash tools/install.sh

# The README's test command (also what .ci/run calls).
test: install
	$(PY) -m pytest tests

# The default job: data -> pre-train -> fine-tune Mask R-CNN -> COCO AP table (see README).
demo: install
	$(PY) tools/run_default_job.py

demo-smoke: install
	$(PY) tools/run_default_job.py --preset smoke

data: install
	$(PY) tools/data/prepare_demo_data.py
