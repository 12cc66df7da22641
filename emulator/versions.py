"""The envd version the emulator advertises (`envdVersion` in create/connect/get answers).

The SDK turns features on by this version (`e2b.envd.versions`): advertise only what the
emulator's envd really does.
"""

ENVD_VERSION = "0.6.7"
