"""`python -m redisq ...`: the `redisq` command line."""

import sys

from redisq.cli import main

sys.exit(main())
