# The verbs: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REF := .venv-ref
PEER := .venv-peer
OUT ?= results

.PHONY: demo test test-all bench reference golden clean
.PHONY: peer bench-real

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/ntk-lab demo --out $(OUT)

# bytecode is cached (some environments set PYTHONDONTWRITEBYTECODE): the test workers, the
# notebook kernels and the command-line runs the tests start then compile the sources once
test: $(VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -n auto --dist worksteal

test-all: $(VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -q -n auto --dist worksteal -m "slow or not slow"

bench: $(VENV)/.installed
	$(PY) -m benchmarks --out $(OUT)/bench

# Pinned neural-tangents 0.6.5 environment (JAX 0.4.25); never imported by the main one.
$(REF)/.installed: reference/requirements.txt
	test -x $(REF)/bin/python || $(PYTHON) -m venv $(REF)
	$(REF)/bin/python -m pip install -q --upgrade pip
	$(REF)/bin/python -m pip install -q -r reference/requirements.txt
	touch $@

reference: $(REF)/.installed

# PyTorch + TRAK peer for benchmarks/bench_real.py; never imported by the main environment.
$(PEER)/.installed: benchmarks/peer/requirements.txt
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install -q --upgrade pip
	$(PEER)/bin/python -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch \
		|| $(PEER)/bin/python -m pip install -q torch
	$(PEER)/bin/python -m pip install -q -r benchmarks/peer/requirements.txt
	touch $@

peer: $(PEER)/.installed

bench-real: $(VENV)/.installed
	$(PY) -m benchmarks --out $(OUT)/bench --only real

golden: $(REF)/.installed $(VENV)/.installed
	$(PY) -m reference.make_empirical_golden
	$(PY) -m reference.make_stax_golden

clean:
	rm -rf $(VENV) $(REF) build *.egg-info

# GPU benchmark (benchmarks/bench_gpu.py): one call, a few minutes on an NVIDIA GPU; without
# one it writes a note and exits 0. No venv stamp dependency: a GPU machine may be offline
# (any Python whose jax sees the GPU works: `make bench-gpu PY=python3`).
.PHONY: bench-gpu
bench-gpu:
	$(PY) -m benchmarks --gpu --out $(OUT)/bench
