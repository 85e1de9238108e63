"""`python -m snn_sweep.aggregate DIR [DIR ...]`: run the command line."""
from .cli import main

if __name__ == "__main__":
    main()
