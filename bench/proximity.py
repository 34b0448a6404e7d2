"""Score every scenario in scenarios/ with every tracker and print the Markdown table.

    ./dev.sh bench proximity [--seeds 1-5] [SCENARIO.toml ...]

The same as ``btogether sim table``; the README's proximity table comes from this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, and bench/ holds scripts named
# like our packages (client.py, relay.py) that would shadow them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from client import sim_cli  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/proximity.py", description=__doc__)
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["table", *sys.argv[1:]])
    sys.exit(args.func(args))
