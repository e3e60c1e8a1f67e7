"""`python scripts/distill.py --help`: the same as `nas distill`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
