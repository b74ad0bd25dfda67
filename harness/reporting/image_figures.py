"""Pictures of what generative models produced, drawn from the samples stored with each run
(never from a model): reconstructions, interpolations, digits sampled from a prior, and the
2-D code of the test split coloured by class. One figure per dataset compares configurations
(first seed of each), so that latent sizes can be read side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.planning.suite_files import safe_name
from harness.reporting.plots import pyplot, save_figure


def _by_dataset(runs: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """For each dataset, each configuration's first stored ``samples[key]``."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        samples = run.get("metrics", {}).get("samples") if run["status"] == "ok" else None
        if samples and samples.get(key):
            config = run["config"]
            found.setdefault(config["dataset_label"], {}).setdefault(config["model_label"], samples)
    return found


def _image(row: list[int], shape: list[int]) -> np.ndarray:
    """A stored row of 0-255 pixels as an image matplotlib shows (channels last)."""
    array = np.asarray(row, dtype=np.float32).reshape(shape) / 255.0
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def _grid(rows: list[tuple[str, list[list[int]]]], shape: list[int], title: str, path: Path):
    """Rows of images, each row named on its left."""
    columns = max(len(images) for _, images in rows)
    figure, axes = pyplot().subplots(
        len(rows), columns, figsize=(0.9 * columns + 1.6, 0.95 * len(rows) + 0.5), squeeze=False
    )
    for axis in axes.flat:
        axis.set_axis_off()
    for r, (name, images) in enumerate(rows):
        for c, row in enumerate(images):
            axes[r][c].imshow(_image(row, shape), cmap="gray", vmin=0, vmax=1)
        axes[r][0].text(-0.15, 0.5, name, transform=axes[r][0].transAxes, ha="right",
                        va="center", fontsize=8)  # fmt: skip
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)


def plot_reconstructions(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per dataset: the test originals on top, each configuration's reconstructions below."""
    paths = []
    for dataset, by_model in _by_dataset(runs, "images").items():
        first = next(iter(by_model.values()))["images"]
        rows = [("original", first["originals"])]
        rows += [(model, s["images"]["reconstructions"]) for model, s in by_model.items()]
        title = f"{dataset}: test digits (top) and their reconstructions"
        path = out_dir / f"reconstructions-{safe_name(dataset)}.png"
        paths.append(_grid(rows, first["shape"], title, path))
    return paths


def plot_interpolations(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per dataset: each configuration decoding the straight line between two test codes."""
    paths = []
    for dataset, by_model in _by_dataset(runs, "interpolation").items():
        shape = next(iter(by_model.values()))["images"]["shape"]
        ends = next(iter(by_model.values()))["interpolation"]["labels"]
        rows = [(model, s["interpolation"]["images"]) for model, s in by_model.items()]
        between = f"a {ends[0]} and a {ends[1]}" if ends else "two test images"
        title = f"{dataset}: decoded along the line between the codes of {between}"
        paths.append(_grid(rows, shape, title, out_dir / f"interpolation-{safe_name(dataset)}.png"))
    return paths


def plot_generated(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per configuration with a prior: a grid of images decoded from codes drawn from it."""
    paths = []
    for dataset, by_model in _by_dataset(runs, "generated_images").items():
        for model, samples in by_model.items():
            images, shape = samples["generated_images"], samples["images"]["shape"]
            width = 8
            rows = [("", images[i : i + width]) for i in range(0, len(images), width)]
            title = f"{model} on {dataset}: decoded from codes drawn from the prior N(0, I)"
            path = out_dir / f"generated-{safe_name(model)}-{safe_name(dataset)}.png"
            paths.append(_grid(rows, shape, title, path))
    return paths


def plot_latents(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per configuration with a 2-D code: every test image's code, coloured by its class."""
    paths = []
    for dataset, by_model in _by_dataset(runs, "latent").items():
        for model, samples in by_model.items():
            codes = np.asarray(samples["latent"]["codes"])
            labels = np.asarray(samples["latent"]["labels"])
            figure, axis = pyplot().subplots(figsize=(6, 5))
            scatter = axis.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
            figure.colorbar(scatter, ax=axis, label="class", ticks=sorted(set(labels.tolist())))
            axis.set_xlabel("code 1")
            axis.set_ylabel("code 2")
            axis.set_title(f"{model} on {dataset}: 2-D codes of the test split", fontsize=9)
            paths.append(
                save_figure(figure, out_dir / f"latent-{safe_name(model)}-{safe_name(dataset)}.png")
            )
    return paths


def plot_images(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Every picture the runs stored samples for."""
    return [
        *plot_reconstructions(runs, out_dir),
        *plot_interpolations(runs, out_dir),
        *plot_generated(runs, out_dir),
        *plot_latents(runs, out_dir),
    ]
