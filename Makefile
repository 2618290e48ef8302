# fairseq_focus — one entry point for setup, tests and the demo.
# Every target that needs Python builds .venv first; `make setup` is idempotent.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
TORCH_PIN := torch==2.13.0
FAIRSEQ_PIN := fairseq-fixed==0.12.3.1

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

# Order matters: the CPU torch pin first (a looser spec downloads a CUDA build), then fairseq's
# build deps, then fairseq-fixed without build isolation (an isolated build would pull its own torch).
$(STAMP): setup.py
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (set PY=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24.1"
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q setuptools wheel cython numpy
	$(BIN)/python -m pip install -q --no-build-isolation $(FAIRSEQ_PIN)
	$(BIN)/python -m pip install -q tensorboard sentencepiece scipy matplotlib pytest scikit-learn
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q tests -m "not slow"

demo: setup
	PATH=$(CURDIR)/$(BIN):$$PATH bash examples/demo.sh

bench: setup
	$(BIN)/python -m fairseq_focus.tools.bench

clean:
	rm -rf $(VENV) build *.egg-info
