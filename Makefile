# labtorch: `make test` installs and runs every test; `make demo` shows labtorch at work.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FIXTURES := tests/fixtures/nvidia-smi

.PHONY: system install test lint demo bench clean

# What the lab and the tests need from the distribution, as `command:Debian package`: sshd for the
# simulated hosts, ip to bring up each host's own loopback (its network namespace), chromium for
# the HTML report's browser test, the venv module for the virtualenv, nginx for the lab cache (its
# host runs the machine's nginx, which every host sees in /usr).
SYSTEM_NEEDS := /usr/sbin/sshd:openssh-server /usr/sbin/ip:iproute2 chromium:chromium \
	python3-venv:python3-venv /usr/sbin/nginx:nginx

# Installs the missing Debian packages as root (quiet, and nothing at all when everything is
# there); elsewhere stops at once with the command to run.
system:
	@missing=""; \
	for need in $(SYSTEM_NEEDS); do \
	    cmd=$${need%%:*}; pkg=$${need##*:}; \
	    if [ "$$cmd" = python3-venv ]; then $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null && continue; \
	    else command -v "$$cmd" >/dev/null 2>&1 && continue; fi; \
	    missing="$$missing $$pkg"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	    echo "missing:$$missing; as root run: apt-get install -y --no-install-recommends$$missing" >&2; exit 1; \
	fi; \
	echo "installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null

install: system $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check labtorch labtorch_sim tests inventories deploys group_data bench
	$(BIN)/ruff format --check labtorch labtorch_sim tests inventories deploys group_data bench

# One pytest run measures branch coverage of labtorch in-process (pyproject's [tool.coverage]);
# the pure core must stay at or above 95% (`$(BIN)/coverage html` for the line-by-line report).
test: lint
	$(BIN)/pytest -q --cov --cov-report=
	@printf 'labtorch, whole package: '; $(BIN)/coverage report --format=total
	$(BIN)/coverage report --fail-under=95 --include='labtorch/data/*,labtorch/facts/*,labtorch/rules/*' \
	    --omit=labtorch/facts/pyinfra_facts.py

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
