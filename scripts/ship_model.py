"""Make an exported model the package's own (``nas/model/``): the one ``nas demo`` and ``nas.analyze`` use
where no model is named. For the project's maintainers: the headline's champion is shipped this way.

    python scripts/ship_model.py runs/<run-id>/export
"""

import argparse
import sys
from pathlib import Path

from nas.deploy.artifact import ship
from nas.errors import NasError
from nas.training.report import read_report

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export", help="an export folder (scripts/export.py) whose model has its report.json beside it")
    args = p.parse_args()
    try:
        print(f"wrote {ship(args.export, read_report(Path(args.export).parent / 'report.json'))}")
    except NasError as exc:
        sys.exit(f"error: {exc}")
