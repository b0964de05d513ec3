"""`python -m comovi_core.train`: Fine-tune CoMoVi

The code lives in `comovi_core.training.train`."""

import sys

from .training import train as _command

if __name__ == "__main__":
    sys.exit(_command.main())
