"""Regenerate the documents derived from the code (`make docs`).

    docs/asyncapi/<service>.json   AsyncAPI of every service's RabbitMQ subscribers
    docs/openapi/gateway.json      OpenAPI of the gateway's HTTP API
    docs/config-reference.md       every setting, its environment variable, default and meaning

The output is deterministic (fixed settings, sorted keys, no timestamps, nothing from this
host), and building the apps connects to nothing. `tests/unit/test_docs_current.py` fails
when the checked-in documents differ from what the code generates now.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

from faststream.asgi import AsgiFastStream
from faststream.specification import AsyncAPI
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from sotto_kit.settings import ServiceSettings

DOCS = Path(__file__).resolve().parents[1] / "docs"
ASYNCAPI_DIR = "asyncapi"
OPENAPI_DIR = "openapi"
CONFIG_REFERENCE = "config-reference.md"

# (document name, package) in the order the reference lists them
SERVICES = (
    ("conversations", "sotto_conversations"),
    ("gateway", "sotto_gateway"),
    ("notifier", "sotto_notifier"),
    ("audit", "sotto_audit"),
)
FIXED_SETTINGS: dict[str, Any] = {
    "rabbitmq_url": "amqp://guest:guest@rabbitmq:5672/",
    "mongodb_url": "mongodb://mongodb:27017/",
}
# Without a JWKS or public key the gateway would generate a development key file.
FIXED_SETTINGS_BY_PACKAGE: dict[str, dict[str, Any]] = {
    "sotto_gateway": {"jwt_jwks_url": "https://idp.example.org/.well-known/jwks.json"},
}


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _module(name: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def settings_classes(module: ModuleType) -> list[type[ServiceSettings]]:
    """The ServiceSettings subclasses a service's config module defines."""
    return [
        value
        for _, value in inspect.getmembers(module, inspect.isclass)
        if issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]


def fixed_settings(settings_type: type[ServiceSettings], package: str) -> ServiceSettings:
    """The service's settings from fixed values and defaults only, ignoring the environment."""

    class Isolated(settings_type):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    values = {**FIXED_SETTINGS, **FIXED_SETTINGS_BY_PACKAGE.get(package, {})}
    settings: ServiceSettings = Isolated(**values)
    return settings


def build_app(package: str) -> Any | None:
    """The service's app built from fixed settings, or None while the service has no main."""
    main, config = _module(f"{package}.main"), _module(f"{package}.config")
    if main is None or config is None:
        return None
    (settings_type,) = settings_classes(config)
    return main.create_app(fixed_settings(settings_type, package))


def built_apps() -> Iterator[tuple[str, Any]]:
    """(document name, app) of every service that exists yet."""
    for name, package in SERVICES:
        app = build_app(package)
        if app is not None:
            yield name, app


def api_documents(name: str, app: Any) -> Iterator[tuple[str, str]]:
    """(relative path, content) of the AsyncAPI and OpenAPI documents of one service."""
    if isinstance(app, AsgiFastStream):
        yield f"{ASYNCAPI_DIR}/{name}.json", _json(app.schema.to_specification().to_jsonable())
        return
    openapi = getattr(app, "openapi_schema", None)
    if openapi is not None:
        yield f"{OPENAPI_DIR}/{name}.json", _json(openapi.to_schema())
    broker = getattr(getattr(app, "state", None), "broker", None)
    if broker is not None:
        spec = AsyncAPI(broker, title=f"Sotto {name}", version="1.0.0").to_specification()
        yield f"{ASYNCAPI_DIR}/{name}.json", _json(spec.to_jsonable())


def environment_variable_names(
    settings_type: type[BaseSettings], name: str, field: FieldInfo
) -> list[str]:
    alias = field.validation_alias or field.alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{settings_type.model_config.get('env_prefix', '')}{name}".upper()]


def all_settings_classes() -> list[type[ServiceSettings]]:
    """ServiceSettings and the settings class of every service that exists yet."""
    classes = [ServiceSettings]
    for _, package in SERVICES:
        config = _module(f"{package}.config")
        if config is not None:
            classes += settings_classes(config)
    return classes


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation)
    for module in ("typing.", "pathlib.", "pydantic.types.", "datetime."):
        text = text.replace(module, "")
    return text


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        return "development value: set it" if value.get_secret_value() else "empty"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | tuple | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _description(settings_type: type[BaseSettings], name: str) -> str:
    for cls in settings_type.__mro__:
        fields: dict[str, FieldInfo] = getattr(cls, "model_fields", {})
        if name in fields and fields[name].description:
            return str(fields[name].description)
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table(settings_type: type[BaseSettings], names: list[str]) -> list[str]:
    rows = [
        "| setting | environment variable | type | default | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        field = settings_type.model_fields[name]
        cells = (
            f"`{name}`",
            ", ".join(f"`{n}`" for n in environment_variable_names(settings_type, name, field)),
            f"`{_type_name(field.annotation)}`",
            _default(field),
            _description(settings_type, name),
        )
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _shared_names() -> list[str]:
    fields = ServiceSettings.model_fields
    return [n for n, f in fields.items() if isinstance(f.validation_alias, AliasChoices)]


def config_reference() -> str:
    shared = _shared_names()
    prefixed_base = [n for n in ServiceSettings.model_fields if n not in shared]
    lines = [
        "# Configuration reference",
        "",
        "Generated by `make docs` from the settings classes (`scripts/gen_docs.py`); do not edit",
        "by hand. Every service reads its settings from environment variables. Infrastructure",
        "settings are shared and read without a prefix, so one environment (a compose file, a",
        "Kubernetes ConfigMap) serves every service; the others carry the service's prefix.",
        "Other variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (and the standard `OTEL_*` exporter",
        "variables) turns on tracing, see `docs/operations.md`.",
        "",
        "## Shared by every service",
        "",
        *settings_table(ServiceSettings, shared),
        "",
        "Every service also has the prefixed settings "
        + ", ".join(f"`{n}`" for n in prefixed_base)
        + " listed under it with its own default.",
        "",
    ]
    for name, package in SERVICES:
        config = _module(f"{package}.config")
        if config is None:
            lines += [f"## {name}", "", f"Not built yet: no `{package}.config` module.", ""]
            continue
        for settings_type in settings_classes(config):
            prefix = settings_type.model_config.get("env_prefix", "")
            names = [
                n
                for n, field in settings_type.model_fields.items()
                if n not in shared or field.validation_alias != _shared_alias(n)
            ]
            lines += [
                f"## {name} (`{prefix}`)",
                "",
                f"`{settings_type.__module__}.{settings_type.__name__}`",
                "",
                *settings_table(settings_type, names),
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _shared_alias(name: str) -> Any:
    return ServiceSettings.model_fields[name].validation_alias


def render() -> dict[str, str]:
    """Every generated document: relative path under docs/ -> content."""
    documents: dict[str, str] = {CONFIG_REFERENCE: config_reference()}
    for name, app in built_apps():
        documents.update(api_documents(name, app))
    return documents


def write(docs: Path) -> list[Path]:
    """Write the documents under `docs`, removing generated files the code no longer makes."""
    documents = render()
    for directory in (ASYNCAPI_DIR, OPENAPI_DIR):
        for stale in sorted((docs / directory).glob("*.json")):
            if f"{directory}/{stale.name}" not in documents:
                stale.unlink()
    written = []
    for relative, content in sorted(documents.items()):
        path = docs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    for path in write(DOCS):
        print(path.relative_to(DOCS.parent))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
