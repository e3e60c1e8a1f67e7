"""Make an exported model the package's own (``nas/models/``): the one ``nas demo`` and ``nas.analyze`` use
where no model is named. For the project's maintainers: the headline's champion is shipped this way, its
weights stored as float16 and measured again on PrivateTest as shipped (``nas.training.ship``).

    python scripts/ship_model.py runs/<run-id>/export --data $FER2013
"""

import argparse
import sys
from pathlib import Path

from nas import data as fer
from nas.errors import NasError
from nas.training.report import read_report
from nas.training.ship import ship

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export", help="an export folder (scripts/export.py) whose model has its report.json beside it")
    p.add_argument("--data", default=None, help=f"FER2013 (default: ${fer.DATA_ENV}); its PrivateTest is measured")
    args = p.parse_args()
    try:
        report = read_report(Path(args.export).parent / "report.json")
        test = fer.load(fer.resolve_data_path(args.data), ("test",))["test"]
        print(f"wrote {ship(args.export, report, test)}")
    except NasError as exc:
        sys.exit(f"error: {exc}")
