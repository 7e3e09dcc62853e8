# The two commands of the README: `make demo` and `make test`. Both build .venv on first use; `make docs` builds
# the documentation site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_STAMP := $(VENV)/.demo-installed
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo test test-slow lint bench docs clean

# What the demo needs, and nothing else: PyTorch (pinned) and edgewise with its own dependencies.
$(DEMO_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e .
	touch $(DEMO_STAMP)

# The test extras (with the docs extra: the site build is a test), and the libraries compared against, so that their
# adapter tests run (EDGEWISE_REQUIRE_BASELINES):
# foolbox and torchattacks from PyPI; adv-lib 0.2.8 (the ALMA/DDN authors' library) needs visdom built with an
# older setuptools and no build isolation, and is installed without its pins. attackbenchlib 2.0.2 (AttackBench's
# metrics and original attacks) is installed without its pins too; it imports wandb at import time (never logged
# in: WANDB_MODE=disabled) and its attack registry imports ART and CleverHans.
$(STAMP): $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[test,timm,exact,docs]' foolbox==3.3.4 torchattacks==3.5.1
	$(PY) -m pip install -q 'setuptools<80' wheel
	$(PY) -m pip install -q --no-build-isolation visdom
	$(PY) -m pip install -q --no-deps adv-lib==0.2.8
	$(PY) -m pip install -q --no-deps attackbenchlib==2.0.2
	$(PY) -m pip install -q wandb adversarial-robustness-toolbox==1.20.1 cleverhans==4.0.0
	touch $(STAMP)

$(DOCS_STAMP): $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/edgewise attack --model smallcnn-fmnist --attack ddn --steps 100 --n 1000 --out results/demo

test: $(STAMP)
	EDGEWISE_REQUIRE_BASELINES=1 WANDB_MODE=disabled $(PY) -m pytest -q
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/attack_speed.py

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) results site

# Mutation score of the core modules (docs/testing.md): mutmut, one module at a time, each mutant against its
# module's fast tests; report in benchmarks/results/mutation_report.md. MODULES=penalties,losses for a subset;
# SAMPLE=40 (SEED=0) for a seeded uniform random sample of 40 mutants of each larger module (a sample estimate).
.PHONY: mutation
mutation: $(STAMP)
	$(PY) -m pip install -q mutmut==3.8.1
	OMP_NUM_THREADS=1 EDGEWISE_REQUIRE_BASELINES=1 $(PY) benchmarks/mutation.py $(if $(MODULES),--modules $(MODULES)) \
		$(if $(SAMPLE),--sample $(SAMPLE) --seed $(or $(SEED),0))
