"""Build the converter a connector's ``key_converter`` / ``value_converter`` settings ask for."""

from __future__ import annotations

from integrations.config import ConverterConfig
from integrations.converters.json import JsonConverter


def build_converter(config: ConverterConfig) -> JsonConverter:
    """The converter for a config. Only plain JSON exists so far."""
    return JsonConverter()
