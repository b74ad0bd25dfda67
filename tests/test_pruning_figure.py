"""The pruning study's figure, inspected as matplotlib built it: its panels, legend and ticks."""

import pytest
from bench_plugins.procedures.pruning.pruning_figure import plot_pruning, pruning_figure, y_bands

from harness.reporting.plots import pyplot


def row(method, target, accuracy, compression, speedup=None, **extra):
    """A summarized row (as the report's ``summarize`` makes it) of one seed."""
    return {
        "model": "m",
        "dataset": "d",
        "method": method,
        "target": target,
        "seeds": 1,
        "after": [accuracy],
        "compression": compression,
        "speedup": speedup or compression,
        **extra,
    }


DENSE = row("dense", 0.0, 0.97, 1.0)
HEALTHY = [row("global-magnitude", t, a, c) for t, a, c in ((50, 0.97, 2), (87.5, 0.95, 8))]
COLLAPSING = [
    row("random", t, a, c) for t, a, c in ((50, 0.9, 2), (87.5, 0.1, 8), (96.875, 0.1, 32))
]


@pytest.fixture
def draw():
    figures = []

    def drawn(rows):
        figures.append(pruning_figure("m", "d", rows))
        return figures[-1]

    yield drawn
    for figure in figures:
        pyplot().close(figure)


def test_a_collapsing_method_breaks_the_y_axis_so_the_upper_band_is_not_squeezed(draw):
    figure = draw([DENSE, *HEALTHY, *COLLAPSING])
    top_left, top_right, bottom_left, bottom_right = figure.axes
    for axis in (top_left, top_right):
        low, high = axis.get_ylim()
        assert low < 90 < 97 < high and high - low < 15  # every upper point, zoomed in
    for axis in (bottom_left, bottom_right):
        low, high = axis.get_ylim()
        assert low < 10 < high < 50  # the collapsed points only
    assert bottom_left.get_shared_x_axes().joined(top_left, bottom_left)


def test_without_a_collapse_one_row_of_panels(draw):
    assert len(draw([DENSE, *HEALTHY]).axes) == 2


def test_one_legend_for_the_figure_and_it_covers_no_panel(draw):
    figure = draw([DENSE, *HEALTHY, *COLLAPSING])
    assert [axis.get_legend() for axis in figure.axes] == [None] * 4
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["global-magnitude", "random", "dense"]
    figure.canvas.draw()
    box = legend.get_window_extent()
    assert not any(box.overlaps(axis.get_window_extent()) for axis in figure.axes)


def test_compression_ticks_are_the_targets_and_none_beyond_the_data(draw):
    """Targets a method measured against the prunable weights sit elsewhere: no tick of theirs."""
    partial = row("layer-magnitude", 75, 0.93, 1.6, target_of="prunable weights")
    figure = draw([DENSE, *HEALTHY, *COLLAPSING, partial])
    axis = figure.axes[-2]  # the bottom panel of the compression column
    assert list(axis.get_xticks()) == [1, 2, 8, 32]
    labels = [t.get_text() for t in axis.get_xticklabels()]
    assert labels == ["0%\n(1x)", "50%\n(2x)", "87.5%\n(8x)", "96.875%\n(32x)"]
    assert axis.get_xlim()[1] < 64
    speedup = figure.axes[-1]
    assert list(speedup.get_xticks()) == [1, 2, 4, 8, 16, 32]


def test_y_bands_split_at_a_wide_gap_only():
    assert y_bands([(95, 97), (10, 10), (9, 12), (90, 96)]) == [(90, 97), (9, 12)]
    assert y_bands([(80, 90), (60, 70), (85, 97)]) == [(60, 97)]  # a gap under a third
    assert y_bands([(97, 97), (95, 95)]) == [(95, 97)]  # a gap of under 10 points


def test_a_model_without_numbers_gets_no_figure(tmp_path):
    failed = {**DENSE, "seeds": 0, "model": "other"}
    files = plot_pruning([DENSE, *HEALTHY, failed], tmp_path)
    assert [path.name for path in files] == ["pruning-m-d.png"]
