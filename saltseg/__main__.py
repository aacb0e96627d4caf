"""``python -m saltseg``."""

import sys

from saltseg.cli import main

sys.exit(main())
