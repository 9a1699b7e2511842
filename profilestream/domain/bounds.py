"""The numeric limits of the output schemas, and sums that stay inside them.

Every record the engine builds must encode whatever valid input came in (issue 11: one record
that did not fit its Avro type stopped the dataflow for everyone). Valid inputs are bounded one
by one (docs/topics.md "Input validation": `quantity` 1 to 100,000, `price` and `revenue` finite), but their
sums are not:

* `revenue` (Avro double) adds up web orders: two revenues of 1e308 make infinity. The sum
  saturates at +/- `DOUBLE_MAX` (the largest finite double). A saturated sum is wrong by what
  would not fit, but it is finite, keeps its sign and still moves back with a refund, and a
  revenue of 1.8e308 is a data error downstream can see, whereas inf and NaN break JSON,
  comparisons and every score computed from it.
* a cart line's `quantity` (Avro int in `profiles` and `triggers`) adds up adds (and carts on a
  merge): 21,475 adds of 100,000 exceed 2^31 - 1. The line saturates at `INT_MAX`; a remove
  counts down from there.
* the counters (`visits`, `page_views`, `product_views`, `orders`) are Avro long and grow by
  one per event (a merge adds two such counts): 2^63 events will not come, so they need no bound.
  Times are input times (the codec bounds `ts`) plus configured durations. Scores are 1 to 3 and
  days are a difference of times divided by a day; BG/NBD predictions that cannot be computed in
  floating point are null (`profilestream.bgnbd`).

Each saturation is counted by the engine (`clamped.revenue`, `clamped.quantity`).
"""

from __future__ import annotations

import math
import sys

DOUBLE_MAX = sys.float_info.max
INT_MAX = 2**31 - 1  # Avro int: a cart line's quantity


def add_double(total: float, value: float) -> tuple[float, bool]:
    """`total + value` saturated at +/- DOUBLE_MAX; True when it had to be. A NaN `value` (never
    from the codec, which refuses it) leaves `total` as it was."""
    result = total + value
    if -DOUBLE_MAX <= result <= DOUBLE_MAX:  # False for inf and NaN alike
        return result, False
    if result != result:  # NaN: an infinity met its opposite, or came in as NaN
        return (total if -DOUBLE_MAX <= total <= DOUBLE_MAX else 0.0), True
    return math.copysign(DOUBLE_MAX, result), True


def finite_double(value: float) -> float:
    """A state value brought within the double's finite range (snapshots of earlier builds)."""
    if -DOUBLE_MAX <= value <= DOUBLE_MAX:
        return value
    return 0.0 if value != value else math.copysign(DOUBLE_MAX, value)


__all__ = ["DOUBLE_MAX", "INT_MAX", "add_double", "finite_double"]
