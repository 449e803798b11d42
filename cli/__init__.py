"""The ``gantrix`` command line (typer): `gantrix.cli.app.create_app` builds it, with the
browsing commands of `gantrix.cli.browse`, the training commands, and every plugin's
commands. Run it as ``gantrix`` or ``python -m gantrix.cli``."""
