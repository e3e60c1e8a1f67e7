"""`python scripts/tune.py --help`: the same as `nas tune`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
