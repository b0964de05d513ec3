"""Shared command-line plumbing: logging to stderr, and bad input as a clear one-line error (exit 2)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .errors import CoMoViError


def run_cli(parse_args: Callable, run: Callable, log: logging.Logger, argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except CoMoViError as exc:
        log.error("%s", exc)
        return 2
    return 0
