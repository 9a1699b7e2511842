"""Tools a production install does not need: the embedded Tansu broker (`broker`), the sample shop
generator (`sample`), the reference benchmark (`bench`) and `profilestream demo` (`demo`).
Only the command line and the tests import them; the dataflow and the codec never do.
"""
