"""`python -m redisq.cli ...`: the `redisq` command line."""

import sys

from redisq.cli import main

sys.exit(main())
