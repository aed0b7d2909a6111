# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Each creates the virtual environment on first use; nothing else needs to be installed beforehand.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgekd-installed
DATA ?= ../shared/data

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	# tfmot declares absl-py~=1.2, which mediapipe's absl-py~=2.3 forbids; it only imports absl in its tests.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps tensorflow-model-optimization==0.8.1
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

MODEL ?= models/300w/kd_student_int8.tflite

# The shipped int8 model on a sample face (no dataset needed): landmarks drawn into a PNG, then its latency.
demo: $(STAMP)
	$(BIN)/edgekd predict $(MODEL) --out runs/demo/landmarks.png
	$(BIN)/edgekd bench $(MODEL) --out-dir runs/demo/bench --threads 1,2

# Data preparation on 300-W from ../shared/data, with a picture of augmented training samples.
prepare: $(STAMP)
	$(BIN)/edgekd data prepare --dataset 300w --root $(DATA)/300w --out-dir runs/data/300w-128 --input-size 128
	$(BIN)/edgekd data show runs/data/300w-128 --name 300w-128 --exist-ok

.PHONY: venv test demo prepare
