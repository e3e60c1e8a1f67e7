"""`python scripts/train.py --help`: the same as `nas train`."""

import sys

from nas.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
