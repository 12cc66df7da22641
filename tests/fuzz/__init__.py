"""The project's own fuzz suite: random and targeted hostile traffic against `SandboxSession`,
with worker kills, and the invariants checked after every campaign (`tests/fuzz/invariants.py`).

`python -m tests.fuzz --sessions N --seed S [--kills K]` runs a campaign on a stack of its own;
`tests/fuzz/test_fuzz.py` runs a small one in the test suite.
"""
