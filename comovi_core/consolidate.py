"""`python -m comovi_core.consolidate`: Join a sharded training state into one checkpoint

The code lives in `comovi_core.training.consolidate`."""

import sys

from .training import consolidate as _command

if __name__ == "__main__":
    sys.exit(_command.main())
