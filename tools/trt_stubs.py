"""Make tensorrt-stubs 10.13 parse under mypy (run by `make test` after installing them).

The stubs on PyPI are generated from the bindings and hold three things mypy rejects, all outside
the API lgcvd uses: plugin methods with a parameter named `in` (a keyword), one signature with a
required parameter after defaulted ones (`add_scale_nd`), and an import of `tensorrt_libs`, a
runtime-only package. This rewrites those lines in place and nothing else.

    .venv/bin/python tools/trt_stubs.py .venv/trt-stubs
"""

from __future__ import annotations

import re
from pathlib import Path

import click


def patch(folder: Path) -> None:
    bindings = folder / "tensorrt_bindings" / "tensorrt.pyi"
    text = bindings.read_text()
    text = re.sub(r"(\bdef \w+\(self(?:: \w+)?, )in: ", r"\1in_: ", text)
    text = text.replace(
        "channel_axis: int) -> IScaleLayer", "channel_axis: int = ...) -> IScaleLayer"
    )
    bindings.write_text(text)
    package = folder / "tensorrt" / "__init__.pyi"
    lines = package.read_text().splitlines(keepends=True)
    package.write_text("".join(x for x in lines if not x.startswith("import tensorrt_libs")))


@click.command(help=(__doc__ or "").split("\n\n")[0])
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(folder: Path) -> None:
    patch(folder)


if __name__ == "__main__":
    main()
