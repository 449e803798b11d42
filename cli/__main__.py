"""``python -m gantrix.cli``: the same as the ``gantrix`` console script."""
from .app import main

main()
