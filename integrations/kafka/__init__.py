"""Kafka clients, settings and the local single-node broker."""
