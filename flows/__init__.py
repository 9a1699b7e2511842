"""The Bytewax dataflows of profilestream: wiring only; the rules live in profilestream.domain."""
