"""`python -m bench` (from the project root): cli.main; the memory check spawns it too."""
import sys

from .cli import main

sys.exit(main())
