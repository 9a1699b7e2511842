"""The edge between Kafka bytes and the domain.

`profilestream.codec.avro` is the codec's meaning (JSON <-> record <-> schemaless Avro, one schema
per topic, package data of `profilestream.schemas`); `profilestream.codec.compiled` its fast path;
`profilestream.codec.validation` the contract checks that decide whether an input record reaches
the domain or the dead-letter topic. Nothing is imported here, so importing a sibling module does
not pull in fastavro.
"""
