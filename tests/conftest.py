"""Shared fixtures: each part of the stack lives in its own module under tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.emulator",
    "tests.fixtures.postgres",
]
