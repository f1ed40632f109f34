"""`python -m stpl ...` runs the command line, as the `stpl` script does."""

import sys

from stpl.cli import main

sys.exit(main())
