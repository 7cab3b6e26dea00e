"""Dagster resources: the Kafka cluster (and later schema registry, object storage) the connectors use."""

from resources.kafka import KafkaResource

__all__ = ["KafkaResource"]
