"""profilestream: real-time unified customer profiles from clickstream and CRM changes on Kafka."""

__version__ = "0.1.0"
