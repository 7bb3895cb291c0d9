"""`python -m pidx.cli ...`: the `pidx` command."""

import sys

from .main import main

sys.exit(main())
