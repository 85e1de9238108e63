"""The one-line errors: bad input names the key or file and what is allowed; a command exits with that line alone.

Hydra prints only the message of a CompactHydraException (no traceback), so a run's InputError
or NonFiniteLossError is one line there too; `one_line` does the same for our other commands."""
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Type

from hydra.errors import CompactHydraException


class InputError(CompactHydraException):
    """Bad user input (config value, path, data file). Hydra prints only the message."""


class NonFiniteLossError(CompactHydraException):
    """The run diverged: one line, as bad input is (Hydra prints only the message)."""


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    """InputError `KEY=VALUE is not allowed: ALLOWED` unless ok."""
    if not ok:
        raise InputError(f"{key}={value!r} is not allowed: {allowed}")


@contextmanager
def one_line(*errors: Type[BaseException]) -> Iterator[None]:
    """A command's body: one of `errors` (InputError when none are named) exits with
    `error: <message>` and status 1, no traceback."""
    try:
        yield
    except errors or (InputError,) as e:
        sys.exit(f"error: {e}")
