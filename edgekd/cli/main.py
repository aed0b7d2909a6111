"""`edgekd`: the group (cli/app.py) with every verb registered, one module per verb.

Each verb is a thin layer over the Python API (no logic lives here); each command function takes one parameter
per option, as click passes them: the reason they exceed eight.
"""
from edgekd.cli import bench, data, export, predict, train  # noqa: F401  (each registers its verb on the group)
from edgekd.cli.app import main, refuse_empty_paths

refuse_empty_paths(main)

if __name__ == "__main__":
    main()
