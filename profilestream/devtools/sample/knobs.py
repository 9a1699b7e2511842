"""The knobs and vocabularies of the sample shop: shares per visit / per record, and the names,
categories, campaigns and hosts the records are made of. Changing one changes every sample."""

from __future__ import annotations

from profilestream.domain.units import DAY, HOUR

# shares are per visit / per record unless said otherwise

ANON_PER_CUSTOMER = 5.5  # anonymous visitors arriving over the period, per customer
LATE_CUSTOMERS = 0.15  # customers who join the CRM during the period, not in the initial import
KEYED = 0.90  # customers with a website account (a customer_key)
KEY_FROM_EMAIL = 0.92  # of those, the key is the hash of their e-mail
EMAIL_SHARE = 0.06  # key-carrying clicks / CRM upserts that send the clear e-mail instead
NEWSLETTER = 0.12  # visits of an opted-in customer that land from a newsletter link
LOGIN = 0.26  # visits of a customer with an account that log in
CAMPAIGN = 0.22  # other visits that land from a paid/social campaign
BLOCKED_KEY = 0.003  # clicks carrying a blocked customer_key value
DUPLICATE_CLICK = 0.002  # clicks sent twice
DUPLICATE_CHANGE = 0.004  # CRM changes sent twice
CRM_FIRST = 0.2  # order imports that reach the CRM stream before the web purchase
ANON_RETURN = 0.45  # chance an anonymous visitor comes back after a visit
UPDATE_MEAN_GAP = 75 * DAY  # mean time between CRM updates of one customer
MOVING = 0.03  # customers with an e-mail who will change it (and so their key) one day
KEY_CHANGE = 0.25  # chance that such a customer's next CRM update is the change
ERASE_PER_CUSTOMER = 1 / 400
LOOKAHEAD = HOUR  # a visit is planned this long before it starts (room for CRM-first orders)
# calibration: records per customer per day of the period, all actors and the CRM included
# (measured with the knobs above; `days` then comes out about right)
RECORDS_PER_CUSTOMER_DAY = 1.09
RECORDS_PER_CUSTOMER = 39.4  # ... plus this much per customer whatever the period

BLOCKED_VALUES = ("undefined", "null", "", "None", "anonymous", "0", " undefined ", "NULL", "-", "test")

CATEGORIES = (  # (name, lowest price, highest price)
    ("shoes", 39.0, 180.0),
    ("dresses", 29.0, 160.0),
    ("jackets", 59.0, 320.0),
    ("shirts", 15.0, 70.0),
    ("bags", 25.0, 260.0),
    ("electronics", 19.0, 900.0),
    ("home", 9.0, 240.0),
    ("beauty", 5.0, 80.0),
    ("sports", 12.0, 200.0),
    ("toys", 8.0, 90.0),
)
SEGMENTS = ("new", "bronze", "silver", "gold", "platinum")
SEGMENT_WEIGHTS = (0.25, 0.3, 0.25, 0.15, 0.05)
CITIES = ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Vienna", "Zurich")
LEAD_STATUSES = ("lead", "offer_created", "sale")
FIRST_NAMES = (
    "anna",
    "ben",
    "clara",
    "david",
    "emma",
    "felix",
    "greta",
    "hannah",
    "jonas",
    "lena",
    "lukas",
    "maria",
    "max",
    "mia",
    "noah",
    "paul",
    "sophie",
    "tim",
    "julia",
    "leon",
    "sara",
    "elias",
)
LAST_NAMES = (
    "mueller",
    "schmidt",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "schulz",
    "hoffmann",
    "koch",
    "richter",
    "klein",
    "wolf",
    "neumann",
    "braun",
    "zimmermann",
    "krueger",
)
DOMAINS = ("example.com", "mail.example", "post.example.org", "web.example.net")
NEWSLETTERS = ("weekly-picks", "new-in", "black-week", "winter-sale", "gift-guide", "last-chance")
CAMPAIGNS = (  # (source, medium, names, referrer)
    (
        "google",
        "cpc",
        ("brand-search", "generic-shoes", "generic-electronics", "black-week-sea"),
        "https://www.google.com/",
    ),
    ("facebook", "social", ("black-week-carousel", "retargeting", "winter-lookbook"), "https://www.facebook.com/"),
    ("instagram", "social", ("influencer-nov", "stories-sale"), "https://www.instagram.com/"),
    ("partner", "affiliate", ("cashback", "deals-blog"), "https://deals.example.org/"),
)
HOSTS = {"phone": "https://m.shop.example", "laptop": "https://www.shop.example"}


__all__ = [
    "ANON_PER_CUSTOMER",
    "ANON_RETURN",
    "BLOCKED_KEY",
    "BLOCKED_VALUES",
    "CAMPAIGN",
    "CAMPAIGNS",
    "CATEGORIES",
    "CITIES",
    "CRM_FIRST",
    "DOMAINS",
    "DUPLICATE_CHANGE",
    "DUPLICATE_CLICK",
    "EMAIL_SHARE",
    "ERASE_PER_CUSTOMER",
    "FIRST_NAMES",
    "HOSTS",
    "KEYED",
    "KEY_CHANGE",
    "KEY_FROM_EMAIL",
    "LAST_NAMES",
    "LATE_CUSTOMERS",
    "LEAD_STATUSES",
    "LOGIN",
    "LOOKAHEAD",
    "MOVING",
    "NEWSLETTER",
    "NEWSLETTERS",
    "RECORDS_PER_CUSTOMER",
    "RECORDS_PER_CUSTOMER_DAY",
    "SEGMENTS",
    "SEGMENT_WEIGHTS",
    "UPDATE_MEAN_GAP",
]
