"""The exception a command reports as one line instead of a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input (a missing or wrong file, a bad config value, nothing to do).

    The message must name the input and say what to do; `avssl.utils.cli.run_main` prints it as
    one line. A ValueError, so code that already catches ValueError keeps working.
    """
