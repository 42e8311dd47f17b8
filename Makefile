# Two entry points for a fresh machine: `make report` and `make test`; both build the venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MLFLOW := $(VENV)/.mlflow
PARAMS ?= params/demo.yaml
RUN    ?= $(basename $(notdir $(PARAMS)))
ARGS   ?=
PYTEST_ARGS ?=
SCALE  ?= 1
# JupyterLab's view of the project: the "cmr" kernel the notebooks ask for, and .py files opening as notebooks
KERNELSPEC := $(VENV)/share/jupyter/kernels/cmr/kernel.json
LABCONFIG  := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json

.PHONY: env mlflow report share synthetic test lab clean

env: $(STAMP) $(KERNELSPEC) $(LABCONFIG)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# the optional extra for --set tracking_uri=... (pyproject's [mlflow]), pinned; the tests log to MLflow, so make test installs it
mlflow: $(MLFLOW)

$(MLFLOW): $(STAMP) requirements-mlflow.txt
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-mlflow.txt -c requirements.txt
	touch $@

$(KERNELSPEC): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name cmr --display-name cmr

$(LABCONFIG): $(STAMP)
	$(BIN)/jupytext-config --settings-file $@ set-default-viewer python

report: $(STAMP)
	$(BIN)/python -m cmr_utils run $(PARAMS) $(ARGS)

# a Recipe1M-size synthetic corpus with given features (no photos) in cache/synthetic/; SCALE=0.1 for a tenth
synthetic: $(STAMP)
	$(BIN)/python -m cmr_utils synthetic --scale $(SCALE) --cache-dir cache

share: $(STAMP)
	$(BIN)/python -m cmr_utils share reports/$(RUN)

test: env $(MLFLOW)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# as root (a container, a cloud notebook box) JupyterLab refuses to start without --allow-root
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_ARGS ?=
lab: env
	$(BIN)/jupyter lab notebooks/ $(AS_ROOT) $(LAB_ARGS)

clean:
	rm -rf reports/*/ reports/*.zip cache/
