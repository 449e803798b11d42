"""``python -m gantrix``: the ``gantrix`` command (what ``torchrun -m gantrix train`` runs)."""
from gantrix.cli.app import main

main()
