"""What a cell of the ``regularization`` procedure is: one training configuration that differs
from the unregularized one only in its regularization, the studies' cells, and their names."""

from __future__ import annotations

import json
from typing import Any


def study_cells(settings: dict[str, Any], mode: str) -> dict[str, list[dict[str, Any]]]:
    """Each study's cells in display order; ``mode`` is the grid's weight-decay mode."""
    base = {
        "dropout": 0.0,
        "dropout_impl": "torch",
        "weight_decay": 0.0,
        "weight_decay_mode": mode,
        "l1": 0.0,
        "l2_loss": 0.0,
        "patience": 0,
        "augment": "none",
    }
    pick = _ends if settings["quick"] else list
    studies = {
        "grid": [
            base | {"dropout": d, "weight_decay": w}
            for d in pick(settings["dropouts"])
            for w in pick(settings["weight_decays"])
        ],
        "l1": [base | {"l1": x} for x in pick(settings["l1"])],
    }
    if lam := settings["l2"]:
        studies["l2"] = [
            base | {"weight_decay": lam, "weight_decay_mode": "coupled"},
            base | {"l2_loss": lam},
            base | {"weight_decay": lam, "weight_decay_mode": "decoupled"},
        ]
    if p := settings["compare_dropout"]:
        studies["dropout"] = [
            base | {"dropout": p},
            base | {"dropout": p, "dropout_impl": "bernoulli"},
        ]
    if settings["patience"]:
        studies["early_stopping"] = [base, base | {"patience": settings["patience"]}]
    if settings["augment"] != "none":
        grid = studies["grid"]
        studies["augmentation"] = [
            cell for plain in grid for cell in (plain, plain | {"augment": settings["augment"]})
        ]
    return studies


def _ends(values: tuple[float, ...]) -> list[float]:
    """The first and last values (one if they are the same; none of an empty sweep)."""
    return list(dict.fromkeys(values[:1] + values[-1:]))


def cell_label(cell: dict[str, Any]) -> str:
    """The cell's regularization in a few words ('none' when it has none)."""
    parts = []
    if cell["dropout"]:
        parts.append(f"dropout={cell['dropout']:g}")
        if cell["dropout_impl"] != "torch":
            parts.append(cell["dropout_impl"])
    if cell["weight_decay"]:
        parts.append(f"wd={cell['weight_decay']:g}")
        if cell["weight_decay_mode"] != "coupled":
            parts.append(cell["weight_decay_mode"])
    parts += [f"{k}={cell[k]:g}" for k in ("l1", "l2_loss", "patience") if cell[k]]
    if cell.get("augment", "none") != "none":  # results from before the study have no key
        parts.append(cell["augment"])
    return ",".join(parts) or "none"


def cell_key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)
