"""`python -m profilestream.devtools.sample [--events N] [--seed S] [--out DIR]`."""

import sys

from profilestream.devtools.sample.cli import main

sys.exit(main())
