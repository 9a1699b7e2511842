"""`python -m profilestream.devtools.bench KIND JOB OUT`: one of the bench's child processes."""

import sys

from profilestream.devtools.bench.children import _child

_child(*sys.argv[1:])
