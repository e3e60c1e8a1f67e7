"""`python scripts/report.py --help`: the same as `nas report`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
