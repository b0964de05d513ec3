"""`python -m comovi_core.fitting`: Fit SMPL to a motion-map video

The code lives in `comovi_core.recovery.fitting`."""

import sys

from .recovery import fitting as _command

if __name__ == "__main__":
    sys.exit(_command.main())
