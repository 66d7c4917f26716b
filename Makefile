# labtorch: `make test` installs and runs every test; `make demo` shows labtorch at work.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FIXTURES := tests/fixtures/nvidia-smi

.PHONY: install test lint demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check labtorch tests inventories deploys group_data bench
	$(BIN)/ruff format --check labtorch tests inventories deploys group_data bench

test: lint
	$(BIN)/pytest -q

# The demo needs root: each simulated host is an sshd in its own mount namespace. pyinfra exits 1
# when a host fails, which the default lab is made to show (a driver that is not loaded, drivers
# too old for the build); anything else stops the demo.
DEPLOY := $(BIN)/pyinfra inventories/sim.py deploys/pytorch.py -y

demo: install
	$(BIN)/labtorch sim up
	@echo "\n== First run: every host gets the build the rules choose for it, from the lab's mirror"
	$(DEPLOY); test $$? -le 1
	@echo "\n== Second run: nothing changes"
	$(DEPLOY); test $$? -le 1
	@echo "\nThe report is in .labtorch/report.json and .labtorch/report.html; stop the lab with: $(BIN)/labtorch sim down"

$(VENV)/.bench: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# Needs root (the simulated lab); about 12-15 min on 2 cores; writes bench/RESULTS.md.
# BENCH_ARGS=--quick: one run at N=10, about a minute.
bench: $(VENV)/.bench
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
