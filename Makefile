# smoacs-bench: `make run` sets up and runs the main job, `make test` sets up and runs the tests.
PYTHON ?= python3
SMOACS_MODEL_DIR ?= $(abspath ../shared/models)
SMOACS_DATA_DIR ?= $(abspath ../shared/data)
export SMOACS_MODEL_DIR SMOACS_DATA_DIR
STAMP := .setup.stamp

.PHONY: setup run test lint clean gpaw

# torch first, pinned to the CPU build, so that nothing pulls a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: a reduced reproduction of Table 3 (SMOACS, TPE and random search in both spaces, FTCP, screening and
# the reference crystals on 5-site perovskites, 1.5 eV, 16 starts, one seed, judged by one evaluator, with the
# physical-validity columns), several minutes on 2 cores; it prints where the table, plot and report are.
run: setup
	smoacs-bench reproduce table3 --tuned results/tuning/chosen.json --samples 16 --seeds 1 --targets 1.5 --relax-workers 2 --out runs/main

test: setup
	$(PYTHON) -m pytest -q --durations=15 tests

# The optional second DFT engine (`--dft-engine gpaw`, `smoacs-bench calibrate dft --engine gpaw`): GPAW has no wheel
# on PyPI, so its sdist is built here against Debian's libxc and OpenBLAS with g++ (its C sources need C++17), and
# its PAW setups come from Debian's gpaw-data (/usr/share/gpaw-setups). Needs root for apt-get; about a minute.
gpaw: setup
	apt-get install -y -q g++ libxc-dev libopenblas-dev gpaw-data
	CC=g++ $(PYTHON) -m pip install --quiet --no-deps 'gpaw>=25'

lint: setup
	$(PYTHON) -m ruff check .

clean:
	rm -rf $(STAMP) build *.egg-info .pytest_cache
