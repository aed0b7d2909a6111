"""The `edgekd` command (floor 7): one verb per stage over the Python API."""
