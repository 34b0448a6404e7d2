"""``python -m btogether`` runs the command line."""

import sys

from btogether.cli import main

sys.exit(main())
