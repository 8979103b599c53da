"""CLI for the deploy checks: `python scripts/deploy_checks/run.py [CHECK ...]` runs the
named checks (all by default), prints each problem and exits non-zero on any failure."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploycheck as dc  # noqa: E402


def main(argv: list[str]) -> int:
    names = argv or list(dc.CHECKS)
    unknown = [n for n in names if n not in dc.CHECKS]
    if unknown:
        print(f"unknown checks {unknown}; choose from {list(dc.CHECKS)}")
        return 2
    failed = 0
    for name in names:
        try:
            problems = dc.CHECKS[name]()
        except dc.CheckSkipped as e:
            print(f"SKIP {name}: {e}")
            continue
        except dc.ToolMissing as e:
            problems = [str(e)]
        print(f"{'PASS' if not problems else 'FAIL'} {name}")
        for p in problems:
            print("  " + p.replace("\n", "\n  "))
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
