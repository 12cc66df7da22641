"""`python -m emulator`: run the local E2B-compatible API."""

import sys

from .server import main

sys.exit(main())
