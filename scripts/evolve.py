"""`python scripts/evolve.py --help`: the same as `nas evolve`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["evolve", *sys.argv[1:]]))
