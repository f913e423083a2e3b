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

# OPEN meta-trained by ES on embedded Ray (2 workers) with a local MLflow store (./mlruns.db),
# registered as open-breakout-demo, then PPO trained from scratch on 4 new seeds with it, the
# published Breakout OPEN, and Adam and RMSProp tuned at this budget (configs/tuned/breakout_cpu.yaml).
demo: install
	$(BIN)/python ray_jobs/meta_train.py --config configs/meta/open_breakout_demo.yaml --out $(DEMO_OUT)/meta
	$(BIN)/python ray_jobs/evaluate.py --env breakout \
		--optimizers models:/open-breakout-demo@champion open adam:tuned rmsprop:tuned \
		--meta-params open=published:breakout --tuned-file configs/tuned/breakout_cpu.yaml \
		--total-steps 196608 --seeds 4 --seed 2000 --out $(DEMO_OUT)/eval

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

bench: install
	$(BIN)/python benchmarks/ppo_throughput.py --out benchmarks/results

clean:
	rm -rf $(VENV) runs .pytest_cache mlruns.db mlartifacts
