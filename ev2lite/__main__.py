"""``python -m ev2lite``: the training command line, as ``ev2lite-train`` and
``python -m ev2lite.train`` (:func:`ev2lite.cli.main`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
