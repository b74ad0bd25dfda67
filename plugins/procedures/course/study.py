"""The ``course`` procedure: the seed course lab by lab, one run per lab, in lab order.

Each lab runs with the manual's own data and settings where it gives them (the first labs in
:mod:`course_labs`), or as a small run of bench's own procedures (:mod:`course_studies`). The
report is one table, one row per lab: what ran, its result, and the reference figure of the
course documents where there is one. The manual itself states almost no expected results, and
the table says so rather than inventing any.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_plugins.procedures.course import labs, studies

from harness.options import Option
from harness.planning.protocol import Procedure, Report, RunContext, Table
from harness.planning.suite_files import Run, Suite
from harness.registry.specs import Registry
from harness.reporting.plots import plot_curves
from harness.reporting.tables import context_line, failures_section, markdown_table

SGD = {"batch_size": 64, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
ADAM = {"batch_size": 64, "optimizer": "adam", "lr": 0.003}


@dataclass(frozen=True)
class Lab:
    name: str
    lab: int
    what: str
    reference: str
    run: Callable[[RunContext, int, bool], dict[str, Any]]
    timed: bool = False  # it measures a time, so it runs alone (Run.exclusive)


LABS = [
    Lab("linear-regression", 3, "y = wx + b on the manual's 5 points, w = b = 1, GD lr 0.001, "
        "100 epochs", "none given (data: manual lab 3)", labs.linear_regression),
    Lab("multiple-regression", 3, "nn.Linear(2, 1) on the manual's 5 subjects, SGD lr 0.01",
        "none given; the manual asks for y at X1 = 3, X2 = 2", labs.multiple_regression),
    Lab("logistic-regression", 3, "sigmoid(wx + b) on the manual's 9 points, BCE, Adam lr 0.1",
        "none given", labs.logistic_regression),
    Lab("xor", 4, "2-2-1 sigmoid network, MSE, SGD lr 0.03, batch 1, 10,000 epochs",
        "9 parameters printed (their outputs are 0.51-0.58: not XOR); no converged outputs",
        labs.xor),
    Lab("cifar-backprop", 4, "3072-100-10 MLP, hand-written backprop vs autograd, lr 1e-3 "
        "x 0.9/epoch, batch 50", "course assignment on CIFAR-10: train 44.72%, test 43.37% "
        "after 10 epochs", labs.cifar_backprop),
    Lab("mnist-mlp", 4, "mlp 784-128-10 on mnist-5k, SGD", "course notes: 101,770 parameters, "
        "test 96.4% on all of MNIST",
        studies.accuracy_lab("mnist-mlp", ["mlp"], "mnist-5k", {**SGD, "epochs": 10}, 2)),
    Lab("mnist-cnn", 5, "the manual's CNNClassifier (cnn) on mnist-5k, SGD",
        "none given; its layers have 149,798 parameters",
        studies.accuracy_lab("mnist-cnn", ["cnn"], "mnist-5k", {**SGD, "epochs": 5}, 1)),
    Lab("checkpoint", 6, "state_dict of model and optimizer saved after EPOCHS = 2, trained on "
        "to NEW_EPOCHS = 5", "none given", studies.checkpoint_lab),
    Lab("transfer", 6, "fine-tune / feature extraction / scratch, mnist-5k → digits",
        "course notes, ResNet-18 on ants/bees: fine-tuning 96.08%, feature extraction 94.77%",
        studies.transfer_lab),
    Lab("regularization", 8, "dropout x weight decay, mlp on mnist1d", "none given",
        studies.regularization_lab("regularization", studies.REGULARIZATION)),
    Lab("augmentation", 8, "random affine augmentation, lenet5 on 50 mnist-5k digits per class",
        "none given", studies.regularization_lab("augmentation", studies.AUGMENTATION), timed=True),
    Lab("rnn", 9, "Elman RNN on WTI oil prices (the manual's natural-gas series is not "
        "offline), Adam", "none given",
        studies.accuracy_lab("rnn", ["rnn"], "wti", {**ADAM, "epochs": 10}, 2)),
    Lab("lstm", 10, "LSTM on WTI oil prices, Adam", "none given",
        studies.accuracy_lab("lstm", ["lstm"], "wti", {**ADAM, "epochs": 10}, 2)),
    Lab("autoencoder", 12, "MLP autoencoder, 16-dim code, on mnist-5k, Adam", "none given",
        studies.accuracy_lab(
            "autoencoder", [{"name": "autoencoder", "options": {"latent": 16}}], "mnist-5k",
            {**ADAM, "epochs": 10}, 2,
        )),
    Lab("vae", 12, "the manual's VAE (10-dim code) on mnist-5k, Adam",
        "none given; its layers have 181,024 parameters",
        studies.accuracy_lab("vae", ["vae"], "mnist-5k", {**ADAM, "epochs": 10}, 2)),
]  # fmt: skip
BY_NAME = {lab.name: lab for lab in LABS}

SETTINGS = {
    "labs": Option(tuple(BY_NAME), "the labs to run, in lab order", "strs"),
    "quick": Option(False, "fewer epochs in every lab", "bool"),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    unknown = [name for name in suite.settings["labs"] if name not in BY_NAME]
    if unknown:
        raise suite.error("course.labs", f"unknown lab '{unknown[0]}'; labs: {', '.join(BY_NAME)}")
    chosen = sorted(suite.settings["labs"], key=list(BY_NAME).index)
    runs = []
    for name in chosen:
        for seed in suite.seeds:
            config = {"name": f"lab{BY_NAME[name].lab}-{name}-s{seed}", "lab": name, "seed": seed,
                      "quick": suite.settings["quick"]}  # fmt: skip
            runs.append(Run(len(runs), "course", config, exclusive=BY_NAME[name].timed))
    return runs


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    config = run.config
    return BY_NAME[config["lab"]].run(ctx, config["seed"], config["quick"])


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    rows, curves = [], {}
    for record in results["runs"]:
        config = record["config"]
        lab = BY_NAME.get(config["lab"])
        metrics = record.get("metrics") or {}
        result = metrics.get("headline") if record["status"] == "ok" else record["status"]
        rows.append(
            {
                "lab": lab.lab if lab else "?",
                "name": config["lab"],
                "what ran": lab.what if lab else "",
                "result": result,
                "course's reference": lab.reference if lab else "",
                "s": f"{record.get('wall_time_s', 0):.1f}",
            }
        )
        if metrics.get("curve"):
            name = f"lab {lab.lab if lab else '?'}: {config['lab']}"
            curves[name] = metrics["curve"], metrics.get("curve_every", 1)
    text = (
        f"## {results['suite']['name']}: the course lab by lab\n\n{context_line(results)}\n\n"
        "One run per lab, in lab order. The references are the course documents' own figures; "
        "the lab manual states almost none, and where it gives none the table says so.\n\n"
        f"{markdown_table(rows)}\n"
    )
    files = []
    if plots_dir and curves:
        files.append(plot_curves(curves, plots_dir / "course-loss-curves.png"))
        text += f"\n![course-loss-curves]({files[0].name})\n"
    text += failures_section(results["runs"]) + "\n"
    return Report(markdown=text, files=files, tables=[Table("course", rows, key=("name",))])


PROCEDURE = Procedure(
    name="course",
    description="the seed course lab by lab: its data, its models, its reference figures",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_models=["mlp"],
    default_datasets=["mnist-5k"],
)
