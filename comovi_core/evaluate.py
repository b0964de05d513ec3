"""`python -m comovi_core.evaluate`: Score a run folder

The code lives in `comovi_core.evaluation.run`."""

import sys

from .evaluation import run as _command

if __name__ == "__main__":
    sys.exit(_command.main())
