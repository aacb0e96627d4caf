"""``python -m saltseg``."""

import sys

from saltseg.cli.main import main

sys.exit(main())
