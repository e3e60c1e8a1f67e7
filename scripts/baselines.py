"""`python scripts/baselines.py`: print the baselines' parameter counts and FLOPs (same as `nas baselines`)."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["baselines", *sys.argv[1:]]))
