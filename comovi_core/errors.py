"""Errors raised at the library's boundary (each message says what was wrong and how to fix it), and how a command
reports them: logging to stderr, bad input as a clear one-line error (exit 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable


class CoMoViError(ValueError):
    """Bad input to comovi_core (file, shape, value). The message names the fix."""


class BodyModelNotFoundError(CoMoViError, FileNotFoundError):
    """No SMPL model file where one was expected."""


class UnsafePickleError(CoMoViError):
    """A pickle asked for something other than plain arrays: refused, never executed."""


class BackendUnavailableError(CoMoViError, RuntimeError):
    """A renderer backend was asked for but cannot run on this machine."""


class TrainingDataError(CoMoViError):
    """Training clips that cannot be used as they are; found before training starts, each named with its fix."""


def run_cli(parse_args: Callable, run: Callable, log: logging.Logger, argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except CoMoViError as exc:
        log.error("%s", exc)
        return 2
    return 0
