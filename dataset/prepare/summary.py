"""What a preparation run packed and skipped: returned by every preparer and printed by the command line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Summary:
    """What a preparation run packed and skipped (printed at the end, returned for callers and tests)."""

    name: str
    out_dir: Path | None = None
    packed: Counter = field(default_factory=Counter)  # split / kind -> count
    notes: Counter = field(default_factory=Counter)  # e.g. "no face: resized whole image"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def report(self) -> str:
        lines = [f"{self.name}: packed {sum(self.packed.values())} images into {self.out_dir}"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.packed.items())]
        lines += [f"  note - {k}: {v}" for k, v in sorted(self.notes.items())]
        if self.skipped:
            reasons = Counter(r for _, r in self.skipped)
            lines.append(f"  skipped {len(self.skipped)}: " + ", ".join(f"{r} ({n})" for r, n in reasons.items()))
            lines += [f"    {n}: {r}" for n, r in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"    ... {len(self.skipped) - 20} more")
        return "\n".join(lines)
