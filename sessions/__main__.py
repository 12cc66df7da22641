"""`python -m sessions`: the same as the `sessions` console script."""

import sys

from sessions.cli import main

sys.exit(main())
