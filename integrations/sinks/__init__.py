"""Sinks: write Arrow batches read from Kafka into an external system."""
