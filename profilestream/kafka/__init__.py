"""Kafka: admin and plain clients (`clients`), the dataflow's partitioned source (`source`) and
sink (`sink`), the per-process in-flight counters (`inflight`) and recordings (`recording`).
Nothing is imported here, so importing one module does not pull in the others.
"""
