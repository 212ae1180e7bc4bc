"""The helpers of `lgcvd_runtime.errors` that word one-line messages: `first_line` (another
error quoted inside one) and `plural`."""

from __future__ import annotations

import pytest

from lgcvd_runtime.errors import BackendError, first_line, plural


@pytest.mark.parametrize(
    "err, text, line",
    [
        (RuntimeError("device lost"), None, "device lost"),
        (
            RuntimeError("\n  CUDA error: out of memory  \nat kernel.cu:12\n"),
            None,
            "CUDA error: out of memory",
        ),
        (RuntimeError(""), None, "RuntimeError"),
        (BackendError("  \n \n"), None, "BackendError"),
        (OSError(2, "No such file"), None, "[Errno 2] No such file"),
        (RuntimeError("ignored"), "the server's own\nmessage", "the server's own"),
        (RuntimeError("ignored"), "", "RuntimeError"),
    ],
)
def test_first_line_is_the_first_non_empty_line_stripped_or_the_type_name(err, text, line):
    assert first_line(err, text) == line


@pytest.mark.parametrize("count, words", [(0, "0 frames"), (1, "1 frame"), (3, "3 frames")])
def test_plural_words_a_count(count, words):
    assert plural(count, "frame") == words
