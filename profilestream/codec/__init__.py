"""The edge between Kafka bytes and the domain.

`profilestream.io.avro` is the codec (JSON <-> record <-> schemaless Avro, one schema per topic
in the repository's `schemas/`); `profilestream.io.validation` holds the contract checks that
decide whether an input record reaches the domain or the dead-letter topic. Nothing is imported
here, so importing a sibling module does not pull in fastavro.
"""
