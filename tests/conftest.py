"""Every fixture lives in tests/fixtures, one module per part of the stack, registered here."""

pytest_plugins = [
    "tests.fixtures.temporal",
    "tests.fixtures.session_stubs",
    "tests.fixtures.emulator",
    "tests.fixtures.emulator_sandboxes",
    "tests.fixtures.postgres",
    "tests.fixtures.stack",
    "tests.fixtures.provider",
    "tests.fixtures.cli",
    "tests.fixtures.security",
    "tests.fixtures.reliability",
    "tests.fixtures.telemetry",
    "tests.fixtures.chaos",
    "tests.fixtures.web",
]

_FIGURES: list[tuple[str, str]] = []
"""What the chaos, reliability and security tests print: their figures, shown in every CI log."""


def pytest_runtest_logreport(report):  # type: ignore[no-untyped-def]
    if report.when == "call" and report.passed:
        # The dev server's start-up banner lands in the same capture: leave it out.
        lines = [
            line
            for line in report.capstdout.splitlines()
            if line.strip() and not line.startswith("Temporal ")
        ]
        if lines:
            _FIGURES.append((report.nodeid, "\n".join(lines)))


def pytest_terminal_summary(terminalreporter):  # type: ignore[no-untyped-def]
    if _FIGURES:
        terminalreporter.section("figures")
        for nodeid, text in _FIGURES:
            terminalreporter.write_line(nodeid)
            for line in text.splitlines():
                terminalreporter.write_line(f"    {line}")
