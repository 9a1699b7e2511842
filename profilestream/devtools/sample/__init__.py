"""A deterministic sample shop: clickstream and CRM changes in the contract's JSON input form.

`generate(ShopSpec(...))` streams `(role, record)` pairs, role `"clickstream"` or `"crm_changes"`,
in the contract's order of application (by `ts`; at equal `ts` CRM changes first, then by id), so
the same spec always gives the same records. `profilestream demo`, the tests and the benchmark
feed it to `produce` (`write_jsonl`) or straight to a producer (`records`).

The shop it simulates:

* Customers known to the CRM (`C000123`): most have a website account whose `customer_key` is the
  SHA-256 of their trimmed, lower-cased e-mail; a few have an account key without a known e-mail and
  a few no account at all (only their order numbers tie them to the web). Attributes like
  `{"segment": "gold", "age": 41.0, "city": "Hamburg"}`, `lead_status` lead/offer_created/sale,
  `marketing_consent` mostly true, some false, a few unknown. Each has 1-3 devices (phone, laptop:
  `d-<hex>`); a couple of laptops are shared by two customers who both log in on them. Beside
  them, anonymous visitors (one device each) who never identify, arriving all the time.
* Visits are bursts of clicks seconds to minutes apart (landing page, category pages, product
  views, add/remove to cart, checkout, purchase with `order_id` and `revenue`), separated by gaps of
  hours, days or weeks (so there are returns after 7+ days); carts are often left and bought on a
  later visit, sometimes on another device, or abandoned for good.
* Identity: some visits land from a newsletter link (a `page_view` carrying the `customer_key` and a
  newsletter/email campaign; only opted-in customers get newsletters), some log in, some buy
  without logging in: the CRM then imports the order (an upsert with that `order_id`) minutes to a
  day later, or for about one order in five up to an hour *before* the web purchase arrives.
  Customers who join the CRM later may log in before the CRM knows their key.
* CRM stream: an initial import of every existing customer in the first two hours, sign-ups of new
  customers through the period, occasional updates (lead status, consent, attributes, rarely a new
  e-mail and so a new key), order imports, and the rare erase (right to be forgotten); an erased
  customer's devices go on visiting anonymously and the CRM says nothing more about them.
* Noise: a small share of clicks and CRM upserts carry a clear `email` instead of `customer_key`
  (in varied case, sometimes padded with blanks), a few clicks carry blocked keys (`undefined`,
  `null`, ...), a few events and changes are sent twice (same id, at once or seconds later),
  campaigns on some first clicks (google/cpc, facebook/social, instagram/social, partner/affiliate),
  sometimes with parts missing.

About 97% of the records are clicks and 3% CRM changes. Ids are zero-padded (`e-00000042`,
`c-00000007`, `O0000012`) so that their text order is their order of generation. Everything comes
from one `random.Random(seed)`; nothing depends on the clock or on set/dict iteration order.
`bad_records` makes contract-breaking records for hostile-input tests; `generate` never does.

The modules, one concept each: `spec` (what to generate, the ground truth), `knobs` (shares and
vocabularies), `actor`, `customers` (population and devices), `catalog`, `crm`, `visits`,
`queue` (the timeline), `simulation` (the shop, `generate`), `bad`, `files` (`write_jsonl`) and
`cli` (`python -m profilestream.devtools.sample`).
"""

from profilestream.devtools.sample.bad import BAD_KINDS, bad_records
from profilestream.devtools.sample.cli import main
from profilestream.devtools.sample.files import write_jsonl
from profilestream.devtools.sample.simulation import generate, population, records
from profilestream.devtools.sample.spec import CLICKSTREAM, CRM_CHANGES, ROLES, Customer, ShopSpec, hash_email
from profilestream.domain.units import DAY, HOUR, MINUTE, SECOND

__all__ = [
    "BAD_KINDS",
    "CLICKSTREAM",
    "CRM_CHANGES",
    "DAY",
    "HOUR",
    "MINUTE",
    "ROLES",
    "SECOND",
    "Customer",
    "ShopSpec",
    "bad_records",
    "generate",
    "hash_email",
    "main",
    "population",
    "records",
    "write_jsonl",
]
