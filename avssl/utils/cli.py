"""The console commands' error boundary: a user mistake is one line, a bug keeps its traceback.

    @hydra.main(config_path="../configs", config_name="x", version_base="1.3")
    @user_errors               # Hydra apps only: report inside the task, before Hydra adds its own line
    def main(cfg): ...

    if __name__ == "__main__":
        run_main(main)     # main: a @hydra.main function, or an argparse main() returning an exit code

`run_main` removes ``--debug`` from ``sys.argv`` (before Hydra or argparse parse it) and runs
``main``. An exception that `is_user_error` says is a mistake in the input -- a `UserError`
(`CheckpointError` included), a media error of a file, a missing file / a folder where a file is
expected, invalid JSON, a Hydra override that names no config key, a mandatory config value left
out -- becomes one line ``<command>: error: <what and which input>`` on stderr and exit status 2.
Anything else is a bug: the full traceback and status 1. With ``--debug`` (or
``HYDRA_FULL_ERROR=1``) user mistakes show their traceback too.

Hydra normally prints a shortened traceback itself and exits; `run_main` sets
``HYDRA_FULL_ERROR=1`` for the call so Hydra re-raises (config errors: a misspelled override
key, an unknown config group option), and decides here instead. A failing Hydra task also makes
Hydra write "Error executing job with overrides ..." on stderr; `user_errors` under ``@hydra.main``
reports the task's user mistakes first and exits, so that line never comes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from avssl.utils.errors import UserError

DEBUG_FLAG = "--debug"
USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130
_HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"
_SET_BY_US = "AVSSL_CLI_SET_HYDRA_FULL_ERROR"  # marks an inherited HYDRA_FULL_ERROR as ours, not the user's
_MAX_CHARS = 600
_state = {"active": False, "debug": False}  # set by run_main for its call


def _hydra_user_errors() -> tuple[type, ...]:
    try:
        from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
        from omegaconf.errors import MissingMandatoryValue
    except ImportError:  # hydra is a dependency; stay usable without it all the same
        return ()
    return ConfigCompositionException, MissingConfigException, OverrideParseException, MissingMandatoryValue


def _is_media_error(exc: BaseException) -> bool:
    # avssl.io.errors.MediaError lives above this layer; match it by name instead of importing it.
    # Every MediaError names its file (`.path`) and the reason.
    return any(c.__name__ == "MediaError" and c.__module__ == "avssl.io.errors" for c in type(exc).__mro__)


def is_user_error(exc: BaseException) -> bool:
    """True for mistakes in what the user gave (printed as one line); False for bugs."""
    if isinstance(exc, (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                        json.JSONDecodeError)):
        return True
    return _is_media_error(exc) or isinstance(exc, _hydra_user_errors())


def _collapse(text: str) -> str:
    """Lines -> one line. An indented list under a line ending in ':' becomes comma separated
    (Hydra's 'Available options in ...:' lists)."""
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if listing and raw[:1] in (" ", "\t"):
            parts[-1] += ("" if parts[-1].endswith(":") else ",") + " " + line
            continue
        listing = line.endswith(":")
        if parts and not parts[-1].endswith((".", ":", ";", ",", "!", "?")):
            parts[-1] += "."  # sentences that were lines stay sentences
        parts.append(line)
    out = " ".join(parts)
    return out if len(out) <= _MAX_CHARS else out[: _MAX_CHARS - 25] + " ... (--debug for all)"


def describe(exc: BaseException) -> str:
    """One line for a user error: what is wrong and which input."""
    if isinstance(exc, OSError) and getattr(exc, "filename", None) and not isinstance(exc, UserError):
        what = {FileNotFoundError: "no such file or folder (check the path)",
                IsADirectoryError: "is a folder, expected a file",
                NotADirectoryError: "is not a folder (a path component is a file)",
                PermissionError: "permission denied"}
        reason = next((v for k, v in what.items() if isinstance(exc, k)), exc.strerror or str(exc))
        return _collapse(f"{exc.filename}: {reason}")
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    text = str(exc)
    if isinstance(exc, _hydra_user_errors()):
        text = _collapse(text.split("\nConfig search path:")[0])  # MissingConfigException: the options suffice
        if getattr(exc, "override", None):  # OverrideParseException names the override apart from its message
            text = f"cannot parse override {exc.override!r}: {text}"
        cause = exc.__cause__
        if cause is not None and str(cause).strip():
            text += f" ({str(cause).strip().splitlines()[0]})"  # omegaconf's reason, without full_key lines
            text += _valid_keys_hint(cause)
        elif exc.__context__ is not None:  # a preset's unknown key: Hydra quotes omegaconf's error in its message
            text += _valid_keys_hint(exc.__context__)
    return _collapse(text) or type(exc).__name__


def _valid_keys_hint(cause: BaseException) -> str:
    """For a key that is not in the config (a misspelled override): the keys its section does have,
    the closest first when one is close (omegaconf's error carries the section as ``parent_node``)."""
    import difflib

    key, parent = getattr(cause, "key", None), getattr(cause, "parent_node", None)
    if key is None or parent is None or not hasattr(parent, "keys"):
        return ""
    keys = [str(k) for k in parent.keys() if str(k) != "hydra"]
    if not keys or str(key) in keys:
        return ""
    full = str(getattr(cause, "full_key", key) or key)
    section = full.rsplit(".", 1)[0] if "." in full else ""
    close = difflib.get_close_matches(str(key), keys, n=1)
    hint = f"; did you mean {(section + '.' if section else '') + close[0]!r}?" if close else ""
    where = f"'{section}'" if section else "the top level"
    return f"{hint} Keys at {where}: {', '.join(keys)}"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "False")


def _debug_requested(argv: list[str]) -> bool:
    inherited = _env_true(_HYDRA_FULL_ERROR) and not _env_true(_SET_BY_US)
    return DEBUG_FLAG in argv[1:] or inherited


def report_user_error(exc: BaseException, prog: str | None = None, stream=None) -> None:
    """Print ``<prog>: error: <describe(exc)>`` (with the rank under torchrun) on stderr."""
    prog = prog or Path(sys.argv[0]).name or "avssl"
    rank = f"[rank {os.environ.get('RANK', '0')}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    print(f"{rank}{prog}: error: {describe(exc)}", file=stream or sys.stderr, flush=True)


def _exit_user_error(exc: BaseException, prog: str | None = None) -> None:
    report_user_error(exc, prog)
    sys.exit(USER_ERROR_STATUS)


def user_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a Hydra task function, placed under ``@hydra.main``: while `run_main` runs
    the command, a user mistake raised by the task is reported as one line and exits 2 (Hydra
    would otherwise add "Error executing job with overrides ..."). Outside `run_main` (a test or
    a notebook calling the function) exceptions pass through unchanged."""

    @functools.wraps(task)  # Hydra unwraps __wrapped__ to find the calling file (config_path)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exc:
            if not _state["active"] or _state["debug"] or not is_user_error(exc):
                raise
            _exit_user_error(exc)

    return wrapper


def run_main(main: Callable[[], Any], argv: list[str] | None = None) -> Any:
    """Run a command's ``main()`` behind the error boundary (see the module docstring).

    ``argv`` defaults to ``sys.argv``; ``--debug`` is removed from it in place (Hydra and
    argparse read ``sys.argv``). An int returned by ``main`` becomes the exit status; anything
    else is returned. User mistakes exit with status 2, Ctrl-C with 130.
    """
    args = sys.argv if argv is None else argv
    debug = _debug_requested(args)
    args[:] = [a for a in args if a != DEBUG_FLAG]
    saved = {k: os.environ.get(k) for k in (_HYDRA_FULL_ERROR, _SET_BY_US)}
    saved_state = dict(_state)
    _state.update(active=True, debug=debug)
    if not _env_true(_HYDRA_FULL_ERROR):
        os.environ[_HYDRA_FULL_ERROR] = "1"  # Hydra: re-raise, do not print a half traceback and exit
        os.environ[_SET_BY_US] = "1"
    try:
        result = main()
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{Path(args[0]).name}: interrupted", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_STATUS)
    except Exception as exc:
        if debug or not is_user_error(exc):
            raise
        _exit_user_error(exc, Path(args[0]).name if args else None)
    finally:
        _state.update(saved_state)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
    return result
