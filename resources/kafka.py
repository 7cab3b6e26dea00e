"""The Kafka cluster as a Dagster resource."""


import dagster as dg
from pydantic import Field

from integrations.kafka.cluster import KafkaSettings


class KafkaResource(dg.ConfigurableResource):
    """Where the Kafka cluster is. Empty fields fall back to ``KAFKA_BOOTSTRAP_SERVERS`` / the local broker.

    Client secrets (SASL passwords, keys) are never fields here: they come from
    ``HEADRACE_KAFKA_CONFIG`` with ``${env:VAR}`` references, so they stay out of run config and the UI.
    """

    bootstrap_servers: str | None = Field(
        default=None, description="host:port list; default KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092"
    )
    connect_retries: int = Field(default=5, description="Attempts to reach the cluster before failing")

    def settings(self) -> KafkaSettings:
        """Engine-level settings for this cluster."""
        base = KafkaSettings.from_env()
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers or base.bootstrap_servers,
            client_config=base.client_config,
            connect_retries=self.connect_retries,
            message_timeout_ms=base.message_timeout_ms,
        )
