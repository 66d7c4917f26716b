# labtorch: `make test` installs and runs every test; `make demo` shows labtorch at work.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FIXTURES := tests/fixtures/nvidia-smi

.PHONY: install test lint demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

lint: install
	$(BIN)/ruff check labtorch tests
	$(BIN)/ruff format --check labtorch tests

test: lint
	$(BIN)/pytest -q

# Until the simulated lab exists (issue 3), the demo plans single machines: this one, then
# saved nvidia-smi outputs of real hosts. Exit status 3 is a refusal, which the demo expects once.
demo: install
	@echo "== This machine (its own nvidia-smi, if any): torch 2.3.1 with conda"
	$(BIN)/labtorch plan --torch 2.3.1
	@echo
	@echo "== The article's host: nvidia-smi says CUDA 12.4, torch 2.3.1 from the pytorch channel"
	$(BIN)/labtorch plan --torch 2.3.1 --platform linux-64 --nvidia-smi $(FIXTURES)/table_a100-sxm4-40gb_550.144.03.txt
	@echo
	@echo "== A GTX 1080 Ti on driver 570, torch 2.9 with pip"
	$(BIN)/labtorch plan --torch 2.9 --installer pip --platform linux-64 --python 3.12 --nvidia-smi $(FIXTURES)/table_gtx1080ti_570.86.15.txt
	@echo
	@echo "== An RTX 5060 (Blackwell) with torch 2.6: refused (exit status 3)"
	$(BIN)/labtorch plan --torch 2.6 --installer pip --platform win-64 --nvidia-smi $(FIXTURES)/table_rtx5060-win-bom_576.88.txt; test $$? -eq 3

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
