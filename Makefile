# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
# Extra arguments for the demo's two steps (tests/test_demo.py runs `make demo` on a tiny budget).
DEMO_META_ARGS ?=
DEMO_EVAL_ARGS ?=
DEMO_O4R_META_ARGS ?=
DEMO_O4R_EVAL_ARGS ?=

.PHONY: install install-gpu demo test test-fast lint bench clean

install: $(STAMP)

# pip byte-compiles on one core; compileall does the same work on every core (benchmarks/README.md, "make demo").
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -c requirements.lock -e '.[dev,cluster]'
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
	touch $(STAMP)

# GPU nodes (CUDA 12, NVIDIA driver on the host): the same set plus jaxlib's CUDA plugin and
# the CUDA libraries as wheels, pinned by requirements-cuda12.lock. `metaopt doctor` checks it.
install-gpu: install
	$(BIN)/python -m pip install -q -c requirements.lock -c requirements-cuda12.lock -e '.[dev,cluster,cuda12]'

# OPEN meta-trained by ES on embedded Ray (2 workers) with the local MLflow store (~/.local/share/metaopt/mlruns.db),
# registered as open-breakout-demo, then PPO trained from scratch on 4 new seeds with it and with
# Adam and RMSProp tuned at this budget (configs/tuned/breakout_cpu.yaml).
# Then Optim4RL meta-trained by pipeline training on Catch with A2C (its reference's own task),
# registered as optim4rl-catch-demo, and A2C agents trained from scratch on 4 new seeds with it and
# with Adam and RMSProp at the reference's settings (5e5 env steps).
demo: install
	$(BIN)/python ray_jobs/meta_train.py --config configs/meta/open_breakout_demo.yaml --out $(DEMO_OUT)/meta $(DEMO_META_ARGS)
	$(BIN)/python ray_jobs/evaluate.py --env breakout \
		--optimizers models:/open-breakout-demo@champion adam:tuned rmsprop:tuned \
		--tuned-file configs/tuned/breakout_cpu.yaml \
		--total-steps 196608 --seeds 4 --seed 2000 --out $(DEMO_OUT)/eval $(DEMO_EVAL_ARGS)
	$(BIN)/python ray_jobs/meta_train.py --config configs/meta/optim4rl_catch_demo.yaml --out $(DEMO_OUT)/optim4rl_meta \
		$(DEMO_O4R_META_ARGS)
	$(BIN)/python ray_jobs/evaluate.py --env catch --optimizers models:/optim4rl-catch-demo@champion adam rmsprop \
		--seeds 4 --seed 2000 --out $(DEMO_OUT)/optim4rl_eval $(DEMO_O4R_EVAL_ARGS)

# Three workers on two cores: many tests wait on subprocesses, Ray start-up and servers, and a
# third worker fills those gaps (benchmarks/README.md: "Test suite wall time").
test: lint
	$(BIN)/python -m pytest -q -n 3 --dist loadfile --durations=15

lint: install
	$(BIN)/ruff check metaopt tests ray_jobs benchmarks

# Daily work: everything but the tests marked slow or ray (pyproject.toml).
test-fast: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow and not ray" --durations=5

bench: install
	$(BIN)/python benchmarks/ppo_throughput.py --out benchmarks/results
	$(BIN)/python benchmarks/a2c_throughput.py --out benchmarks/results/a2c_throughput.json

clean:
	rm -rf $(VENV) runs .pytest_cache mlruns.db mlartifacts
