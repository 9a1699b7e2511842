"""The domain core: identity, visits, carts, triggers and profiles as plain Python.

Nothing in this package imports Kafka, Avro or Bytewax. State is held in small dataclasses and
changed by transition functions, so every rule of docs/semantics.md can be tested alone and the
core could move to another stream engine unchanged. Times are integers: milliseconds since the
Unix epoch (UTC).
"""
