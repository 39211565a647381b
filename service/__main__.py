"""`python -m service [tmws arguments]`: the `tmws` CLI; with no arguments it serves."""

import sys

from service.cli import main

sys.exit(main(sys.argv[1:] or ["serve"]))
