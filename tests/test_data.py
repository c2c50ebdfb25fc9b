"""Data loading: embedded sets, IDX files written here, the teacher task, errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from muptheory.data import IDX_FILES, load_dataset, read_idx
from muptheory.errors import InvalidInputError

# -- IDX files made by the tests ---------------------------------------------------------


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian sizes, big-endian data."""
    dtypes = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, code, array.ndim])
    sizes = b"".join(struct.pack(">I", n) for n in array.shape)
    return header + sizes + array.astype(dtypes[code]).tobytes()


def write_idx_dir(directory, *, n_train=60, n_test=20, side=5, gz=False, seed=0):
    """Four MNIST-like IDX files of random images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train_labels"][:10] = np.arange(10)  # every class present
    for key, stem in IDX_FILES.items():
        blob = idx_bytes(arrays[key])
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(blob))
        else:
            (directory / stem).write_bytes(blob)
    return arrays


def assert_standardized(x: np.ndarray) -> None:
    assert abs(x.mean()) < 1e-10
    assert abs(x.std() - 1.0) < 1e-10


def assert_one_hot_of(y: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    assert y.shape == (len(labels), n_classes)
    assert set(np.unique(y)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    np.testing.assert_array_equal(y.argmax(axis=1), labels)


# -- IDX directories ---------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_keeps_its_split_and_labels(tmp_path, gz):
    arrays = write_idx_dir(tmp_path, gz=gz)
    data = load_dataset(str(tmp_path))

    assert (data.n_classes, data.input_dim) == (10, 25)
    assert data.x_train.shape == (60, 25) and data.x_test.shape == (20, 25)
    np.testing.assert_array_equal(data.labels_train, arrays["train_labels"])
    np.testing.assert_array_equal(data.labels_test, arrays["test_labels"])
    assert_one_hot_of(data.y_train, data.labels_train, 10)
    assert_one_hot_of(data.y_test, data.labels_test, 10)
    assert_standardized(data.x_train)

    # Standardized with the training statistics: the test set maps by the same map.
    raw_train = arrays["train_images"].reshape(60, -1).astype(float)
    raw_test = arrays["test_images"].reshape(20, -1).astype(float)
    expected = (raw_test - raw_train.mean()) / raw_train.std()
    np.testing.assert_allclose(data.x_test, expected, rtol=1e-12)


def test_gzipped_and_plain_idx_give_the_same_dataset(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_idx_dir(tmp_path / "a", gz=False, seed=3)
    write_idx_dir(tmp_path / "b", gz=True, seed=3)
    a = load_dataset(str(tmp_path / "a"), n_train=30, seed=5)
    b = load_dataset(str(tmp_path / "b"), n_train=30, seed=5)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.labels_test, b.labels_test)


def test_idx_files_in_a_raw_subfolder_with_dotted_names_are_found(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_idx_dir(raw)
    for stem in IDX_FILES.values():
        (raw / stem).rename(raw / stem.replace("-idx", ".idx"))
    assert load_dataset(str(tmp_path)).x_train.shape == (60, 25)


def test_read_idx_reads_other_element_types(tmp_path):
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    (tmp_path / "short").write_bytes(idx_bytes(values, code=0x0B))
    np.testing.assert_array_equal(read_idx(tmp_path / "short"), values)


def test_directory_without_idx_files_names_the_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InvalidInputError, match="holds no IDX files.*train-images"):
        load_dataset(str(tmp_path))


def test_a_single_file_instead_of_a_directory_is_rejected(tmp_path):
    write_idx_dir(tmp_path)
    with pytest.raises(InvalidInputError, match="is not a directory"):
        load_dataset(str(tmp_path / "train-images-idx3-ubyte"))


def test_directory_missing_one_idx_file_names_it(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(InvalidInputError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset(str(tmp_path))


def corrupt(path, how: str) -> None:
    blob = path.read_bytes()
    if how == "truncated":
        path.write_bytes(blob[:-7])
    elif how == "magic":
        path.write_bytes(b"\x01\x02" + blob[2:])
    elif how == "header":
        path.write_bytes(blob[:6])
    elif how == "extra":
        path.write_bytes(blob + b"\x00")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated", "is truncated: shape"),
        ("magic", "bad magic number 0x0102"),
        ("header", "truncated inside its header"),
        ("extra", "longer than its header says"),
    ],
)
def test_corrupt_idx_file_is_one_line_naming_the_file(tmp_path, how, message):
    write_idx_dir(tmp_path)
    corrupt(tmp_path / "train-images-idx3-ubyte", how)
    with pytest.raises(InvalidInputError, match=message) as info:
        load_dataset(str(tmp_path))
    text = str(info.value)
    assert "train-images-idx3-ubyte" in text
    assert "\n" not in text


def test_truncated_gzip_is_one_line_naming_the_file(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InvalidInputError, match="t10k-images-idx3-ubyte.gz.*cannot be"):
        load_dataset(str(tmp_path))


def test_images_and_labels_of_different_lengths_are_rejected(tmp_path):
    write_idx_dir(tmp_path)
    labels = np.zeros(59, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(InvalidInputError, match="60 images but 59 labels"):
        load_dataset(str(tmp_path))


def test_nan_in_float_idx_images_is_rejected(tmp_path):
    write_idx_dir(tmp_path)
    images = np.ones((60, 5, 5), dtype=np.float32)
    images[3, 2, 2] = np.nan
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(images, code=0x0D))
    with pytest.raises(InvalidInputError, match="NaN"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("split", ["train", "t10k"])
def test_an_idx_set_with_no_images_is_one_line_naming_the_file(tmp_path, split):
    write_idx_dir(tmp_path)
    empty_images = np.zeros((0, 5, 5), dtype=np.uint8)
    (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(empty_images))
    (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(
        idx_bytes(np.zeros(0, dtype=np.uint8))
    )
    with pytest.raises(InvalidInputError, match="holds no images") as info:
        load_dataset(str(tmp_path))
    assert f"{split}-images-idx3-ubyte" in str(info.value)


def test_idx_images_with_no_pixels_are_rejected(tmp_path):
    write_idx_dir(tmp_path)
    for split, n in (("train", 60), ("t10k", 20)):
        flat = np.zeros((n, 0, 5), dtype=np.uint8)
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(idx_bytes(flat))
    with pytest.raises(InvalidInputError, match="have no pixels"):
        load_dataset(str(tmp_path))


def test_an_idx_header_whose_byte_count_overflows_64_bits_is_truncated(tmp_path):
    write_idx_dir(tmp_path)
    # 2^31 * 2^31 * 4 bytes = 2^64, which wraps to 0 in a 64-bit product
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**31, 2**31, 4)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header)
    with pytest.raises(InvalidInputError, match=f"needs {2**64} data bytes, found 0"):
        load_dataset(str(tmp_path))


def test_a_label_beyond_the_class_bound_is_rejected_naming_it(tmp_path):
    write_idx_dir(tmp_path)
    labels = np.zeros(60, dtype=np.int32)
    labels[7] = 100000
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, code=0x0C))
    with pytest.raises(InvalidInputError, match="largest label is 100000"):
        load_dataset(str(tmp_path))


def test_images_too_large_to_standardize_are_rejected_not_zeroed(tmp_path):
    write_idx_dir(tmp_path)
    rng = np.random.default_rng(1)
    huge = rng.standard_normal((60, 5, 5)) * 1e200  # squares overflow float64
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(huge, code=0x0E))
    with pytest.raises(InvalidInputError, match="too large to standardize"):
        load_dataset(str(tmp_path))


def test_test_images_that_overflow_after_standardizing_are_rejected(tmp_path):
    write_idx_dir(tmp_path)
    far = np.full((20, 5, 5), 1e300)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(far, code=0x0E))
    with pytest.raises(InvalidInputError, match="standardized test inputs overflow"):
        load_dataset(str(tmp_path), dtype=np.float32)


# -- embedded sets --------------------------------------------------------------------------


def test_digits_is_split_80_20_stratified_and_standardized():
    data = load_dataset("digits", seed=0)
    assert data.name == "digits"
    assert (data.input_dim, data.n_classes) == (64, 10)
    assert data.n_train + data.n_test == 1797
    assert abs(data.n_test - 0.2 * 1797) < 10
    assert_standardized(data.x_train)
    assert_one_hot_of(data.y_train, data.labels_train, 10)
    assert_one_hot_of(data.y_test, data.labels_test, 10)

    # Stratified: every class holds close to a fifth of its samples out.
    held = np.bincount(data.labels_test, minlength=10)
    total = held + np.bincount(data.labels_train, minlength=10)
    assert np.all(np.abs(held - 0.2 * total) <= 1)


def test_the_split_is_fixed_by_the_seed():
    a = load_dataset("digits", seed=7, n_train=100)
    b = load_dataset("digits", seed=7, n_train=100)
    c = load_dataset("digits", seed=8, n_train=100)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.labels_test, b.labels_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_feature_standardization_gives_unit_features_and_floors_constant_ones():
    data = load_dataset("digits", standardize="feature")
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-10)
    # Features above the floor have unit std; floored ones (rare pixels) less.
    assert np.isclose(std, 1.0, atol=1e-10).sum() >= 50
    assert np.all(std <= 1.0 + 1e-10)
    # Digits has pixels that are always 0: they stay finite (0) instead of NaN.
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_test).all()


def test_mnist5k_loads_offline_with_its_5000_images():
    data = load_dataset("mnist5k", n_test=100, dtype=np.float32)
    assert data.n_train == 4000 and data.n_test == 100
    assert (data.input_dim, data.n_classes) == (784, 10)
    assert data.x_train.dtype == np.float32
    assert_one_hot_of(data.y_test, data.labels_test, 10)


# -- the synthetic teacher ---------------------------------------------------------------------


def test_synthetic_task_has_configurable_sizes_and_a_seed_independent_teacher():
    a = load_dataset("synthetic", seed=0, n_train=300, n_test=50, input_dim=8)
    b = load_dataset("synthetic", seed=1, n_train=300, n_test=50, input_dim=8)
    assert a.x_train.shape == (300, 8) and a.y_test.shape == (50, 10)
    assert_one_hot_of(a.y_train, a.labels_train, 10)
    assert len(np.unique(a.labels_train)) >= 5
    assert not np.array_equal(a.x_train, b.x_train)

    # Same teacher: a nearest-neighbour rule fitted on seed 0 labels seed 1 well
    # above chance (0.1).
    distances = ((b.x_test[:, None, :] - a.x_train[None, :, :]) ** 2).sum(-1)
    predicted = a.labels_train[distances.argmin(axis=1)]
    assert (predicted == b.labels_test).mean() > 0.3


def test_synthetic_regression_targets_are_the_teacher_outputs():
    data = load_dataset("synthetic", n_train=64, n_classes=3, targets="regression")
    assert data.y_train.shape == (64, 3)
    assert len(np.unique(data.y_train)) > 100
    np.testing.assert_array_equal(data.y_train.argmax(axis=1), data.labels_train)


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_name_lists_the_accepted_names():
    with pytest.raises(InvalidInputError, match="digits, mnist5k, synthetic"):
        load_dataset("cifar10")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_train": 0}, "n_train must be a positive integer"),
        ({"n_test": -3}, "n_test must be a positive integer"),
        ({"n_train": 5000}, "exceeds the"),
        ({"input_dim": 16}, "synthetic task only"),
        ({"standardize": "minmax"}, "unknown standardization"),
    ],
)
def test_bad_options_are_rejected_with_what_was_wrong(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        load_dataset("digits", **kwargs)


def test_changing_a_returned_array_does_not_change_the_next_load(tmp_path):
    write_idx_dir(tmp_path)
    first = load_dataset(str(tmp_path))
    expected = first.x_train.copy()
    first.x_train[:] = 0.0
    first.labels_train[:] = 0
    second = load_dataset(str(tmp_path))
    np.testing.assert_array_equal(second.x_train, expected)
    assert len(np.unique(second.labels_train)) == 10
