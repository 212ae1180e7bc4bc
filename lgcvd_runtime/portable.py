"""Records a bundle ships with, freed of the paths of the machine that made them.

A bundle's manifest says where its model came from (provenance: checkpoint, training data,
commands) and what its input score was calibrated on ("ood"); it travels to other machines, so
it names no absolute path. `portable` rewrites one: relative to the current folder when inside
it, else its last folder and file name (`/home/me/runs/tune3/checkpoint.safetensors` ->
`runs/tune3/checkpoint.safetensors` from /home/me, `tune3/checkpoint.safetensors` elsewhere);
`portable_record` does so for every path in a JSON-like record, in commands word by word.
Knows nothing about models.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def portable(path: str) -> str:
    """An absolute `path` as a shipped record gives it (module header); other paths unchanged."""
    pure = PurePosixPath(path)
    if not pure.is_absolute():
        return path
    here = PurePosixPath(Path.cwd())
    if pure.is_relative_to(here) and pure != here:
        return str(pure.relative_to(here))
    return str(PurePosixPath(*pure.parts[1:][-2:]))


def portable_record(value, key: str = ""):
    """`value` (dicts, lists, scalars) with every absolute path made `portable`: a string under
    a key ending in "command" word by word (split at spaces), any other string whole."""
    if isinstance(value, dict):
        return {k: portable_record(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_record(v) for v in value]
    if not isinstance(value, str):
        return value
    if key.endswith("command"):
        return " ".join(portable(word) for word in value.split(" "))
    return portable(value)
