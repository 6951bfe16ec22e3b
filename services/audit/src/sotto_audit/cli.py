"""Operator commands: `verify --practice P`, `sign-head --practice P` and `prune [--practice P]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from sotto_audit import handlers
from sotto_audit.adapters.store import AuditStore
from sotto_audit.config import AuditSettings
from sotto_contracts.base import utc_now
from sotto_kit.mongo import connect


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sotto_audit")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify", help="walk a practice's chain; exit 1 when broken")
    verify.add_argument("--practice", required=True)
    sign = commands.add_parser(
        "sign-head",
        help="check a chain against its unsigned watermark and sign its head with the key"
        " (chains recorded before the key was set, or reported as missing a signed head)",
    )
    sign.add_argument("--practice", required=True)
    prune = commands.add_parser(
        "prune", help="remove records past retention behind a signed checkpoint"
    )
    prune.add_argument("--practice", help="one practice; all practices when omitted")
    prune.add_argument(
        "--now", type=_aware, help="evaluate retention as of this ISO time (default: now)"
    )
    return parser


async def run(argv: Sequence[str], settings: AuditSettings | None = None) -> int:
    """Run one command; returns the process exit status."""
    arguments = _parser().parse_args(argv)
    settings = settings or AuditSettings()
    key = settings.checkpoint_key.get_secret_value().encode() if settings.checkpoint_key else None
    client = connect(settings.mongodb_url, timeout_ms=settings.mongo_timeout_ms)
    store = AuditStore(client[settings.database], head_key=key)
    try:
        if arguments.command == "verify":
            result = await handlers.verify_chain(store, arguments.practice, key)
            print(json.dumps({"practice_id": arguments.practice, **result.model_dump()}))
            return 0 if result.valid else 1
        if key is None:
            print(f"{arguments.command} needs AUDIT_CHECKPOINT_KEY to sign", file=sys.stderr)
            return 2
        if arguments.command == "sign-head":
            result, signed = await handlers.sign_head(store, arguments.practice, key)
            report = {"practice_id": arguments.practice, "signed": signed, **result.model_dump()}
            print(json.dumps(report))
            return 0 if signed else 1
        practices = [arguments.practice] if arguments.practice else await store.practices()
        status = 0
        for practice_id in practices:
            pruned = await handlers.prune(
                store,
                practice_id,
                now=arguments.now or utc_now(),
                retention_years=settings.retention_years,
                checkpoint_key=key,
            )
            checkpoint = pruned.checkpoint
            print(
                json.dumps(
                    {
                        "practice_id": practice_id,
                        "removed": pruned.removed,
                        "checkpoint_sequence": checkpoint.sequence if checkpoint else None,
                        "refused": pruned.refused,
                    }
                )
            )
            status = 1 if pruned.refused else status
        return status
    finally:
        await client.close()


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:])))
