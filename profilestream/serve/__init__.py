"""`profilestream serve`: the HTTP edge (CONTRACT.md "HTTP", docs/http.md).

Why a package of its own: the edge is shell around the codec and the store, and each part is one
idea that can be tested without the others: `collector` (JSON and pixel requests to validated
clickstream records, the same codec path as `produce`), `producer` (one long-lived Kafka producer
that acknowledges on hand-over and flushes on shutdown), `follow` (the profile store, the
merged-away index and the latest triggers, kept current from the output topics), `ui` (the
single-customer-view pages, server-rendered), `openapi` (the API description, derived from the
Avro schemas so it cannot drift from them) and `app` (the ASGI routes that tie them together).
Nothing here is imported by the dataflow.
"""
