"""`python -m comovi_core.capture`: training clips from your own videos

The code lives in `comovi_core.capture.dataset`."""

import sys

from . import dataset as _command

if __name__ == "__main__":
    sys.exit(_command.main())
