"""`python -m snn_sweep.bench`: the command line (cli.main); the memory check spawns it too."""
import sys

from .cli import main

sys.exit(main())
