"""`python -m emulator`: run the local E2B-compatible API (it ends the process itself)."""

from .server import main

main()
