"""Summary statistics of raw timing samples: median and IQR first, because timings are skewed.

A measurement is flagged ``noisy`` when its IQR exceeds 10% of its median:
its median is then too uncertain to compare against another run without the raw samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

NOISE_THRESHOLD = 0.10


@dataclass(frozen=True)
class Summary:
    """Statistics of one set of samples. Percentiles interpolate linearly (numpy's default)."""

    n: int
    median: float
    mean: float
    std: float
    iqr: float
    p10: float
    p25: float
    p75: float
    p90: float
    min: float
    max: float

    @property
    def noisy(self) -> bool:
        return self.median > 0 and self.iqr / self.median > NOISE_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "noisy": self.noisy}


def summarize(samples: Sequence[float]) -> Summary:
    """Summarise raw samples; the standard deviation is the sample one (0 for a single value)."""
    import numpy as np  # imported on first use: statistics are computed long after start-up

    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("cannot summarise an empty list of samples")
    p10, p25, p50, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return Summary(
        n=int(values.size),
        median=float(p50),
        mean=float(values.mean()),
        std=std,
        iqr=float(p75 - p25),
        p10=float(p10),
        p25=float(p25),
        p75=float(p75),
        p90=float(p90),
        min=float(values.min()),
        max=float(values.max()),
    )
