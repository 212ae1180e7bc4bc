"""Serving a bundle on NVIDIA Triton Inference Server (docs/serving.md).

- `configs`: the `config.pbtxt` text of each Triton model, from the bundle manifest.
- `repository`: writes a Triton model repository from a bundle (`lgcvd-serve triton-repo`).
- `triton_models`: the code that runs inside Triton's Python backend: the two graphs on
  onnxruntime (`--graphs python`) and the `lgcvd` model, whose Pipeline calls them through BLS.
- `local_server`: starts the `tritonserver` binary of the `nvidia-pytriton` wheel on this machine
  (CPU, Python backend only), for tests, benchmarks and trials.
- `cli`: the `lgcvd-serve` command line.

Nothing here imports Triton's packages at module level: `triton_python_backend_utils` exists only
inside a running Triton, and `tritonclient` is an optional extra (`lgcvd_runtime.serve.client`).
"""
