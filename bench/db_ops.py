"""Database commands per unit of work, from the services' command-shape logs.

Set `SOTTO_MONGO_COMMAND_LOG=FILE` for the services (`bench.trace --db-log FILE` does) and
every MongoDB command they send is appended to FILE as one JSON line: database, command,
collection, the field names of its filter and its duration (`sotto_kit.mongo.CommandShapeLog`).
This groups the lines after a byte offset by service and shape, divided by the units of work
(messages posted, GETs answered) done meanwhile:

    .venv/bin/python -m bench.db_ops FILE [--units N] [--offset BYTES]

Filters without an `_id` equality (or `$in` of strings) scan the whole collection on the
SQLite backend of FerretDB as `scripts/infra` builds it (other fields beside `_id` are fine),
so they are flagged. A diagnosis aid, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def summary(path: Path, units: int, offset: int = 0) -> str:
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    with path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            record = json.loads(raw)
            service = str(record["db"]).rpartition("_")[2]
            key = (service, record["command"], record["collection"], record["filter"])
            groups[key].append(int(record["micros"]))
    per_unit = max(units, 1)
    lines = [f"{'per unit':>9} {'ms/unit':>8}  service        command        collection / filter"]
    rows = sorted(groups.items(), key=lambda item: -sum(item[1]))
    for (service, command, collection, shape), micros in rows:
        by_id = "_id" in shape.split(",")
        scan = "" if shape == "" or by_id or shape.startswith("n=") else "  <- scans (no _id)"
        lines.append(
            f"{len(micros) / per_unit:9.2f} {sum(micros) / 1000 / per_unit:8.2f}  "
            f"{service:14} {command:14} {collection} [{shape}]{scan}"
        )
    total = sum(len(m) for m in groups.values())
    lines.append(f"{total / per_unit:9.2f} commands per unit in all ({total} for {units} units)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--units", type=int, default=1)
    parser.add_argument("--offset", type=int, default=0)
    args = parser.parse_args()
    print(summary(args.path, args.units, args.offset))


if __name__ == "__main__":
    main()
