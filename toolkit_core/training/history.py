"""The record :func:`toolkit_core.fit` returns: one row of averaged metrics per epoch."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass
class History:
    """Per-epoch metrics of a training run.

    ``epochs[i]`` holds the batch-size-weighted means over epoch ``i`` of everything the defense
    logged (``loss``, ``clean_acc``, ``adv_acc``, ...; averaged over all ranks under DDP), plus
    ``eval_clean_acc`` / ``eval_adv_acc`` when ``eval_data`` was given, and ``time_s``.
    ``history["loss"]`` is the list of a metric over epochs.
    """

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __getitem__(self, key: str) -> list[float]:
        if not self.epochs or key not in self.epochs[-1]:
            known = sorted(self.epochs[-1]) if self.epochs else []
            raise KeyError(f"no metric {key!r} in the history; recorded: {', '.join(known) or 'nothing yet'}")
        return [row.get(key, float("nan")) for row in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def last(self) -> dict[str, float]:
        """The metrics of the final epoch (empty before the first epoch ends)."""
        return dict(self.epochs[-1]) if self.epochs else {}

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(r) for r in self.epochs], "meta": dict(self.meta)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        return cls(epochs=[dict(r) for r in d.get("epochs", [])], meta=dict(d.get("meta", {})))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __str__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        keys = [k for k in self.epochs[-1] if k != "epoch"]
        head = "epoch  " + "  ".join(f"{k:>14}" for k in keys)
        rows = [head]
        for row in self.epochs:
            cells = [f"{row.get(k, float('nan')):>14.4f}" for k in keys]
            rows.append(f"{int(row.get('epoch', 0)):>5}  " + "  ".join(cells))
        return "\n".join(rows)

    def __rich__(self):  # pragma: no cover - display only
        from rich.table import Table

        table = Table(title="training history")
        keys = list(self.epochs[-1]) if self.epochs else []
        for k in keys:
            table.add_column(k, justify="right")
        for row in self.epochs:
            table.add_row(*(f"{row.get(k, float('nan')):.4g}" for k in keys))
        return table
