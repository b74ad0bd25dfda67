"""The old-api-blobs dataset: Gaussian blobs from scikit-learn, deterministic for a seed."""

from harness import hookimpl
from harness.data import DataContext, Splits, stratified_splits
from harness.options import Option
from harness.registry import DatasetSpec
from sklearn.datasets import make_blobs

FEATURES, CLASSES = 16, 3


def load_blobs(options: dict, context: DataContext) -> Splits:
    """Train/validation/test splits of ``samples`` points, 20% test and 10% validation."""
    x, y = make_blobs(
        n_samples=options["samples"],
        n_features=FEATURES,
        centers=CLASSES,
        random_state=context.seed,
    )
    train, val, test = stratified_splits(x, y, test=0.2, val=0.1, seed=context.seed)
    return Splits(train, val, test, input_shape=(FEATURES,), num_classes=CLASSES)


DATASET = DatasetSpec(
    name="old-api-blobs",
    description=f"{CLASSES} Gaussian blobs in {FEATURES} dimensions (scikit-learn make_blobs)",
    load=load_blobs,
    input_shape=(FEATURES,),
    num_classes=CLASSES,
    options={"samples": Option(600, "number of points", "int", minimum=30)},
)


@hookimpl
def register_datasets(register):
    register(DATASET)
