"""`python -m comovi_core.export`: write BVH, OBJ or GLB files from a motion

The code lives in `comovi_core.export.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
