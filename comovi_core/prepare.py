"""`python -m comovi_core.prepare`: Encode training clips into a cache

The code lives in `comovi_core.training.prepare`."""

import sys

from .training import prepare as _command

if __name__ == "__main__":
    sys.exit(_command.main())
