"""Errors that Headrace reports to users."""

from __future__ import annotations


class HeadraceError(Exception):
    """Base class of every error Headrace raises on purpose, with a message meant for users."""


class ConfigError(HeadraceError):
    """A connector file is invalid. The message names the file, the field, the value and what is allowed."""


class KafkaUnavailable(HeadraceError):
    """The Kafka cluster could not be reached after bounded retries."""


class KafkaRefused(HeadraceError):
    """Kafka answered but refused the client (a TLS certificate or SASL credentials): retrying won't help."""


class DeliveryError(HeadraceError):
    """Some records of a batch were not acknowledged by Kafka; no offset was stored for it."""


class InjectedFault(HeadraceError):
    """Raised (or the process killed) at a named fault point, for crash tests."""
