"""`python -m comovi_core.checkpoint`: Look inside Wan2.2 / CoMoVi checkpoints

The code lives in `comovi_core.model.inspect`."""

import sys

from .model import inspect as _command

if __name__ == "__main__":
    sys.exit(_command.main())
