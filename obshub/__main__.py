"""`python -m obshub` == the `obshub` command."""

import sys

from obshub.cli import main

sys.exit(main())
