"""Schema snapshots of every contract message, and the rule for a compatible change.

Regenerate after a deliberate, compatible change: `.venv/bin/python -m tests.contracts.snapshots`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sotto_contracts.registry import MESSAGES

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def current_schema(routing_key: str) -> dict[str, Any]:
    return MESSAGES[routing_key].model_json_schema(mode="validation")


def snapshot_path(routing_key: str) -> Path:
    return SNAPSHOTS / f"{routing_key}.json"


def incompatibilities(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """Ways `new` would break a consumer or producer written against `old`."""
    problems: list[str] = []
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name in old_props:
        if name not in new_props:
            problems.append(f"{where}{name}: field removed")
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{where}{name}: newly required")
    for name, old_prop in old_props.items():
        new_prop = new_props.get(name)
        if new_prop is None:
            continue
        old_type = old_prop.get("type") or old_prop.get("$ref") or old_prop.get("anyOf")
        new_type = new_prop.get("type") or new_prop.get("$ref") or new_prop.get("anyOf")
        if old_type != new_type and json.dumps(old_type) not in json.dumps(new_type):
            problems.append(f"{where}{name}: type changed from {old_type} to {new_type}")
        if "enum" in old_prop and not set(old_prop["enum"]) <= set(new_prop.get("enum", [])):
            problems.append(f"{where}{name}: enum values removed")
    for name, old_def in old.get("$defs", {}).items():
        new_def = new.get("$defs", {}).get(name)
        if new_def is None:
            problems.append(f"{where}$defs.{name}: definition removed")
            continue
        problems += incompatibilities(old_def, new_def, f"{where}{name}.")
        if "enum" in old_def and not set(old_def["enum"]) <= set(new_def.get("enum", [])):
            problems.append(f"{where}{name}: enum values removed")
    return problems


def write_all() -> None:
    SNAPSHOTS.mkdir(exist_ok=True)
    for routing_key in MESSAGES:
        snapshot_path(routing_key).write_text(
            json.dumps(current_schema(routing_key), indent=2, sort_keys=True) + "\n"
        )


if __name__ == "__main__":
    write_all()
