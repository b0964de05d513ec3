"""Errors raised at the library's boundary; each message says what was wrong and how to fix it."""


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
