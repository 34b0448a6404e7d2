"""Score every scenario in scenarios/ with every tracker and print the Markdown table.

    ./dev.sh bench proximity [--seed N] [SCENARIO.toml ...]

The same as ``btogether sim table``; the README's proximity table comes from this.
"""

from __future__ import annotations

import sys

from btogether.cli import main

if __name__ == "__main__":
    sys.exit(main(["sim", "table", *sys.argv[1:]]))
