# Quickstart: `make demo` and `make test`. Each creates .venv in the repo root on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-train lint test test-unit bench install clean mutation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned: on the reference CPU machine pip takes the local CPU build
	$(BIN)/pip install --quiet -e ".[test]"
	# Ray 2.60's `ray start` turns on token authentication; the ray CLI (ray job submit) sends the
	# token from ~/.ray/auth_token only in token mode, so the activated venv sets it
	grep -q RAY_AUTH_MODE $(BIN)/activate || printf '\n# econ-ray: authenticate the ray CLI to token-protected clusters\nexport RAY_AUTH_MODE=token\n' >> $(BIN)/activate
	touch $(STAMP)

install: $(STAMP)

# the quickstart search: the dense model once, then 6 targeted trials (budgets 5-60 % of its FLOPs),
# 2 at a time, each on a Ray Train worker with DeepSpeed (CPU)
demo: $(STAMP)
	$(BIN)/econ-ray search search_spaces/quickstart.yaml

# one training run of the quickstart: dense phase, then cut to 30 % of the dense static FLOPs
demo-train: $(STAMP)
	$(BIN)/econ-ray train search_spaces/quickstart.yaml --set objective.target_ratio=0.3

# the fast part of `make test`: lint, formatting and types (mypy reads [tool.mypy] in pyproject.toml)
LINTED := econ_ray tests benchmarks scripts
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q tests

test-unit: lint
	$(BIN)/pytest -q -m "not integration" tests

# every benchmark in a short setting, into runs/bench/ (see benchmarks/README.md); ~30 min on 2 CPU cores
BENCH := runs/bench
bench: $(STAMP)
	mkdir -p $(BENCH)
	$(BIN)/python benchmarks/step_overhead.py --models minilm,gpt2-small --batch 4 --seq 128 --warmup 1 --steps 3 --out $(BENCH)/step_overhead.json
	$(BIN)/python benchmarks/search_efficiency.py --seeds 2 --trials 9 --out $(BENCH)/search_efficiency.json
	$(BIN)/python benchmarks/early_stopping.py --seeds 2 --trials 6 --out $(BENCH)/early_stopping.json
	$(BIN)/python benchmarks/worker_imports.py --repeats 3 --out $(BENCH)/worker_imports.json
	$(BIN)/python benchmarks/machinery_overhead.py --trials 2 --set training.max_steps=60 --out $(BENCH)/machinery_overhead.json
	$(BIN)/python benchmarks/realised_speedup.py $$(ls -d $(BENCH)/machinery-*/run | tail -1) --threads 1 --out $(BENCH)/realised_speedup.json

# Mutation testing with mutmut (not part of `make test`; docs/testing.md). It mutates a copy under
# ./mutants and runs each mutant against its module's unit tests below (only the tests that cover the
# mutated function, fastest first), one mutant at a time. `make mutation` runs every module in turn;
# `make mutation MODULE=econ_ray/metrics` (or a file: MODULE=econ_ray/compute/latency.py) runs one.
MUTATION_MODULES := econ_ray/attention econ_ray/objectives econ_ray/metrics econ_ray/compute econ_ray/search/pareto.py
MUTATION_TESTS.econ_ray/attention := tests/unit/test_attention.py tests/unit/test_kernels.py tests/unit/test_runtime.py tests/unit/test_objective_protocol.py tests/unit/test_topk.py
MUTATION_TESTS.econ_ray/objectives := tests/unit/test_objectives.py tests/unit/test_constrained.py tests/unit/test_penalised.py tests/unit/test_objective_protocol.py tests/unit/test_constraint_every.py
MUTATION_TESTS.econ_ray/metrics := tests/unit/test_allocation_metrics.py tests/unit/test_task_metrics.py
MUTATION_TESTS.econ_ray/compute := tests/unit/test_flops.py tests/unit/test_latency.py tests/unit/test_shape.py
MUTATION_TESTS.econ_ray/search/pareto.py := tests/unit/test_pareto.py tests/unit/test_moasha.py tests/unit/test_plot.py
# a module's test files: its own entry, else its package's (econ_ray/compute/latency.py -> econ_ray/compute)
mutation_tests = $(or $(MUTATION_TESTS.$(1)),$(MUTATION_TESTS.$(patsubst %/,%,$(dir $(1)))),$(error no unit tests mapped to $(1): add MUTATION_TESTS.$(1) to the Makefile))
# mutmut names a mutant module.function__mutmut_N: econ_ray/compute/latency.py -> econ_ray.compute.latency.*
mutation_prefix = $(subst /,.,$(patsubst %.py,%,$(1))).
define mutation_run
	@echo "== mutation: $(1) against $(call mutation_tests,$(1))"
	PYTEST_ADDOPTS='-o "testpaths=$(call mutation_tests,$(1))"' $(BIN)/mutmut run --max-children 1 "$(call mutation_prefix,$(1))*"
	@echo "== not killed in $(1) (mutmut show NAME prints one):"; $(BIN)/mutmut results | grep -F " $(call mutation_prefix,$(1))" || true
	@$(BIN)/mutmut results --all true | grep -F " $(call mutation_prefix,$(1))" \
	  | awk -F': ' '{n[$$2]++; t++} END {printf "== $(1): %d mutants:", t; for (s in n) printf " %s %d", s, n[s]; print ""}'

endef
mutation: $(STAMP)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install --quiet -e ".[dev]"
	$(foreach m,$(or $(MODULE),$(MUTATION_MODULES)),$(call mutation_run,$(m)))

clean:
	rm -rf $(VENV) runs mlruns mlflow.db .pytest_cache
