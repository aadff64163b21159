"""`python -m harness.cli ...` runs the truthsteer command line."""

import sys

from harness.cli import main

sys.exit(main())
