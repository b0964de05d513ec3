"""`python -m comovi_core.generate`: Co-generate a video, its motion map and the 3D motion

The code lives in `comovi_core.inference.generate`."""

import sys

from .inference import generate as _command

if __name__ == "__main__":
    sys.exit(_command.main())
