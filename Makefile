# smoacs-bench: `make run` sets up and runs the main job, `make test` sets up and runs the tests.
PYTHON ?= python3
SMOACS_MODEL_DIR ?= $(abspath ../shared/models)
SMOACS_DATA_DIR ?= $(abspath ../shared/data)
export SMOACS_MODEL_DIR SMOACS_DATA_DIR
STAMP := .setup.stamp

.PHONY: setup run test lint clean

# torch first, pinned to the CPU build, so that nothing pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	smoacs-bench run --method smoacs --task perovskite --target-bg 1.5 --n-samples 256 --steps 200 --seed 0 --out runs/perovskite_bg1.5

test: setup
	$(PYTHON) -m pytest -q tests

lint: setup
	$(PYTHON) -m ruff check .

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
