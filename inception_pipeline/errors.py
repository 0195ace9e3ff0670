"""The one exception type a user sees, and the entry point wrapper that prints it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input or params: the message is one line naming the file, key or value at fault."""


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a PipelineError becomes one line on stderr and exit status 2."""
    try:
        main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
