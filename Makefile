# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/metaopt compare --env breakout --optimizers adam rmsprop \
		--total-steps 1000000 --seeds 2 --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/python benchmarks/ppo_throughput.py --out benchmarks/results

clean:
	rm -rf $(VENV) runs .pytest_cache
