"""The envd version the emulator advertises (`envdVersion` in create/connect/get answers).

The SDK turns features on by this version (`e2b.envd.versions`): advertise only what the
emulator's envd really does. Up to 0.6.7 it does all of them: recursive watch (0.1.4), stdin
(0.3.0), the default user (0.4.0), closing stdin (0.5.2), octet-stream upload (0.5.7), file
metadata (0.6.2), entry info in watch events (0.6.3) and watching network mounts on request
(0.6.4). Not emulated, whatever the version: PTYs (UNIMPLEMENTED).
"""

ENVD_VERSION = "0.6.7"
