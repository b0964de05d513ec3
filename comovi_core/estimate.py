"""`python -m comovi_core.estimate`: Estimate a SMPL start pose from a picture

The code lives in `comovi_core.recovery.estimate`."""

import sys

from .recovery import estimate as _command

if __name__ == "__main__":
    sys.exit(_command.main())
