"""Key/value converter settings (``key_converter`` / ``value_converter`` on every connector)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ConverterType = Literal["json", "json_schema", "string", "bytes", "avro"]


class ConverterConfig(BaseModel):
    """How record keys or values become bytes (and back), like Kafka Connect's converters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Annotated[
        ConverterType,
        Field(description="json (JsonConverter, schemas.enable=false) | json_schema ({schema, payload} "
                          "envelope) | string | bytes | avro (Schema Registry wire format)"),
    ] = "json"
    schemas_enable: Annotated[
        bool, Field(description="With type json: write/read Kafka Connect's {schema, payload} envelope")
    ] = False
    decimal_format: Annotated[
        Literal["base64", "numeric", "string"] | None,
        Field(description="json_schema: base64 (Kafka Connect's default: two's-complement bytes) | numeric "
                          "(decimal.format=NUMERIC); json: numeric (default) | string"),
    ] = None
    schema_registry_url: Annotated[
        str | None,
        Field(description="avro: Schema Registry URL (http://..., ${env:VAR} allowed; mock://name for tests)"),
    ] = None
    schema_registry_config: Annotated[
        dict[str, str],
        Field(description="avro: extra client settings, e.g. basic.auth.user.info: ${env:SR_AUTH}"),
    ] = {}
    auto_register_schemas: Annotated[bool, Field(description="avro: register new schemas on write")] = True
    field: Annotated[
        str, Field(description="string/bytes: the column a decoded value lands in (and the one encoded); "
                               "json_schema/avro: the column a primitive (non-struct) key or value decodes into")
    ] = "value"

    @model_validator(mode="after")
    def _check(self) -> ConverterConfig:
        if self.type == "avro" and not self.schema_registry_url:
            raise ValueError("converter type 'avro' needs 'schema_registry_url'")
        if self.schemas_enable and self.type not in ("json", "json_schema"):
            raise ValueError("'schemas_enable' applies to converter type 'json' only")
        allowed = {"json": ("numeric", "string"), "json_schema": ("base64", "numeric")}.get(self.kind, ())
        if self.decimal_format is not None and self.decimal_format not in allowed:
            raise ValueError(f"decimal_format {self.decimal_format!r} does not apply to converter {self.kind!r}"
                             + (f"; allowed: {', '.join(allowed)}" if allowed else ""))
        return self

    @property
    def decimals(self) -> str:
        """The effective decimal format: base64 for json_schema, numeric for json, unless set."""
        return self.decimal_format or ("base64" if self.kind == "json_schema" else "numeric")

    @property
    def kind(self) -> str:
        """The effective converter: ``json`` with ``schemas_enable`` is ``json_schema``."""
        return "json_schema" if self.type == "json" and self.schemas_enable else self.type
