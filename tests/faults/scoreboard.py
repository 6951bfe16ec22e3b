"""Each fault and attack test reports its counts here; the session prints them as one table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    scenario: str
    goal: str
    counts: Mapping[str, float]
    met: bool


@dataclass
class Scoreboard:
    outcomes: list[Outcome] = field(default_factory=list)

    def record(self, scenario: str, goal: str, counts: Mapping[str, float], *, met: bool) -> None:
        self.outcomes.append(Outcome(scenario, goal, dict(counts), met))

    def table(self) -> list[str]:
        rows = [
            (
                outcome.scenario,
                outcome.goal,
                ", ".join(f"{name}={_show(value)}" for name, value in outcome.counts.items()),
                "met" if outcome.met else "MISSED",
            )
            for outcome in self.outcomes
        ]
        header = ("scenario", "goal", "observed", "goal met")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in [header, *rows]
        ]
        lines.insert(1, "-+-".join("-" * width for width in widths))
        return lines


def _show(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


SCOREBOARD = Scoreboard()
