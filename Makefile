# ev2lite: `make` sets up and runs every notebook (quick profile); `make test` runs all tests.
# Data: set EV2LITE_DATA to the folder holding cifar10.tar and imagenette.tar (default: data/).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out
PROFILE ?= quick

.PHONY: all setup main test unit nbval smoke lab bench full results clean
all: main

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name ev2lite --display-name "Python (ev2lite)"
	$(BIN)/python -m ipykernel install --user --name ev2lite --display-name "Python (ev2lite)"
	touch $@

# The main job: every notebook, in order, through papermill; executed notebooks and figures
# land in $(OUT)/$(PROFILE)/.
main: setup
	$(BIN)/python -m ev2lite.runbook --profile $(PROFILE) --out $(OUT)/$(PROFILE)

# All tests: unit tests, the notebooks under nbval (smoke profile), the main job (smoke profile).
# No test downloads anything (EV2LITE_OFFLINE=1); tests that need the archives skip without them.
test: unit nbval smoke
unit: setup
	EV2LITE_OFFLINE=1 $(BIN)/python -m pytest tests
nbval: setup
	EV2LITE_OFFLINE=1 EV2LITE_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks
smoke: setup
	EV2LITE_OFFLINE=1 $(BIN)/python -m ev2lite.runbook --profile smoke --out $(OUT)/smoke

# Benchmarks (speed tables of the README; CSV/JSON to results/). Run on an idle machine.
bench: setup
	for b in bench_train_step bench_data bench_convs bench_image_size time_to_accuracy; do \
		$(BIN)/python benchmarks/$$b.py || exit 1; done

# The committed results: every notebook with the full profile (hours; CSV/JSON to $(OUT)/full/),
# then `make results` copies them into results/ (the only step that writes there).
full: setup
	$(BIN)/python -m ev2lite.runbook --profile full --out $(OUT)/full
results: setup
	$(BIN)/python -m ev2lite.results $(OUT)/full

# JupyterLab on the notebooks; as root (a container, CI) it needs --allow-root, added here.
lab: setup
	$(BIN)/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

clean:
	rm -rf $(OUT) .pytest_cache
