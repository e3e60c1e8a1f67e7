"""`python scripts/demo.py --help`: the same as `nas demo`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
