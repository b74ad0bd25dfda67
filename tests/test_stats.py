"""Summary statistics of raw samples, on samples whose statistics are known by hand."""

import math
import random

import pytest

from harness.measuring.summary import NOISE_THRESHOLD, summarize


def test_summary_of_one_to_eleven():
    samples = [float(i) for i in range(1, 12)]
    random.Random(0).shuffle(samples)  # order must not matter
    s = summarize(samples)
    assert s.n == 11
    assert (s.median, s.mean, s.min, s.max) == (6.0, 6.0, 1.0, 11.0)
    # linear interpolation: p25 sits halfway between 3 and 4, p75 between 8 and 9
    assert (s.p25, s.p75) == pytest.approx((3.5, 8.5))
    assert s.iqr == pytest.approx(8.5 - 3.5)
    assert (s.p10, s.p90) == pytest.approx((2.0, 10.0))
    assert s.std == pytest.approx(math.sqrt(110 / 10))  # sample standard deviation


def test_a_single_sample_has_no_spread():
    s = summarize([0.25])
    assert (s.n, s.median, s.std, s.iqr, s.p10, s.p90) == (1, 0.25, 0.0, 0.0, 0.25, 0.25)
    assert not s.noisy


def test_noisy_when_iqr_exceeds_ten_percent_of_median():
    assert NOISE_THRESHOLD == 0.10
    quiet = summarize([0.95, 1.0, 1.05])  # IQR 0.05 = 5% of the median
    noisy = summarize([0.8, 1.0, 1.2])  # IQR 0.2 = 20% of the median
    assert quiet.iqr == pytest.approx(0.05) and not quiet.noisy
    assert noisy.iqr == pytest.approx(0.2) and noisy.noisy


def test_to_dict_carries_every_statistic_and_the_flag():
    record = summarize([1.0, 2.0, 3.0]).to_dict()
    expected = {"n", "median", "mean", "std", "iqr", "p10", "p25", "p75", "p90", "min", "max"}
    expected.add("noisy")
    assert set(record) == expected
    assert record["noisy"] is True  # IQR 1.0 against a median of 2.0


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
