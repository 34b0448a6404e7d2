"""Score every scenario in scenarios/ with every tracker and print the Markdown table.

    ./dev.sh bench proximity [--seeds 1-5] [SCENARIO.toml ...]

The same as ``btogether sim table``; the README's proximity table comes from this.
"""

from __future__ import annotations

import argparse
import sys

from client import sim_cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/proximity.py", description=__doc__)
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["table", *sys.argv[1:]])
    sys.exit(args.func(args))
