"""`python scripts/export.py --help`: the same as `nas export`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
