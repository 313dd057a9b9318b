"""`python -m planner` runs the `tierwise` command line."""

import sys

from planner.cli import main

sys.exit(main())
