"""Converters: Arrow columns to Kafka key/value bytes, and back, per batch."""
