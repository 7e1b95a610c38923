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
	$(PIP) install -q -e ".[test,ray]"
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

bench: venv system-deps
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
