"""Take an embedded server away and bring it back from outside the run, by its recorded pid:

    python scripts/embedded_fault.py stop|start|pause|resume redis|postgres [--state-dir DIR]

For servers the run does not own (started with `tmws infra up`, then given by URL), this is what
`--fault-stop-cmd` / `--fault-start-cmd` / `--fault-pause-cmd` / `--fault-resume-cmd` can call:

    --fault-stop-cmd 'python scripts/embedded_fault.py stop {target} --state-dir .tmws'

Each action returns once it took effect (a stopped server has exited, a started one listens).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.faults import ACTIONS, TARGETS, EmbeddedDriver, FaultError
from service.infra.embedded import EmbeddedInfra, InfraError, read_infra_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedded_fault.py", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--state-dir", type=Path, default=Path(".tmws"))
    args = parser.parse_args(argv)
    if read_infra_file(args.state_dir) is None:
        print(
            f"embedded_fault: no embedded servers recorded under {args.state_dir}", file=sys.stderr
        )
        return 2
    driver = EmbeddedDriver(EmbeddedInfra.create(args.state_dir))
    try:
        print(driver.act(args.action, args.target))
    except (FaultError, InfraError) as exc:
        print(f"embedded_fault: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
