"""Summarise py-spy collapsed stacks (`bench/results/profile-*.txt`): where the samples are.

    .venv/bin/python -m bench.profile_top bench/results/profile-read-gateway.txt [--top 25]

Prints the total samples, then the functions with the most inclusive samples (a function
counted once per stack it appears in) and the most self samples (the stack's last frame).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    lines = [f"{path.name}: {total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- {title}")
        lines.extend(
            f"{samples * 100 / max(total, 1):5.1f}%  {frame}"
            for frame, samples in counter.most_common(top)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.paths:
        print(summarise(path, args.top))


if __name__ == "__main__":
    main()
