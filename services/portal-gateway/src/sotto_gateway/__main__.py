"""`python -m sotto_gateway mint-staff-token --practice P --staff S`: a local staff token."""

from __future__ import annotations

import argparse
from datetime import timedelta

from sotto_gateway.adapters.tokens import mint_staff_token
from sotto_gateway.config import GatewaySettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sotto_gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    mint = commands.add_parser("mint-staff-token", help="sign a development staff token")
    mint.add_argument("--practice", required=True)
    mint.add_argument("--staff", required=True)
    mint.add_argument("--hours", type=float, default=8.0)
    arguments = parser.parse_args(argv)
    token = mint_staff_token(
        GatewaySettings(),
        practice_id=arguments.practice,
        staff_id=arguments.staff,
        lifetime=timedelta(hours=arguments.hours),
    )
    print(token)


if __name__ == "__main__":
    main()
