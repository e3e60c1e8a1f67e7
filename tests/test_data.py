import gzip

import cv2
import numpy as np
import pytest
import torch
from conftest import REAL_DATA, requires_real_data

from nas import data
from nas.errors import DataError


def test_csv_round_trip_and_splits(synthetic_csv):
    d = data.load(synthetic_csv, ("train", "val", "test"))
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 560, "val": 70, "test": 70}
    x, y = data.synthetic_splits(700, seed=0)["val"]
    assert d["val"].x.dtype == torch.uint8 and d["val"].x.shape == (70, 1, 48, 48)
    assert np.array_equal(d["val"].x.numpy()[:, 0], x) and np.array_equal(d["val"].y.numpy(), y)


def test_search_splits_do_not_decode_test(synthetic_csv):
    d = data.load(synthetic_csv)
    assert set(d.splits) == {"train", "val"}
    with pytest.raises(KeyError, match="was not loaded"):
        d["test"]


def test_gzip_npz_and_folder_forms_give_the_same_data(synthetic_csv, tmp_path):
    plain = data.load(synthetic_csv, ("train", "val", "test"))
    gz = tmp_path / "fer.csv.gz"
    gz.write_bytes(gzip.compress(synthetic_csv.read_bytes()))
    assert data.load(gz, ("train", "val", "test")).fingerprint == plain.fingerprint
    npz = data.save_npz(plain, tmp_path / "fer.npz")
    assert data.load(npz, ("train", "val", "test")).fingerprint == plain.fingerprint

    root = tmp_path / "folders"
    for split, folder in (("train", "train"), ("val", "val"), ("test", "test")):
        for i, (img, label) in enumerate(zip(plain[split].x.numpy(), plain[split].y.numpy())):
            out = root / folder / data.CLASS_NAMES[label] / f"{i:04d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), img[0])
    folder = data.load(root, ("train", "val", "test"))
    for split in ("train", "val", "test"):  # folders are read class by class: compare as multisets
        assert sorted(folder[split].y.tolist()) == sorted(plain[split].y.tolist())
        assert folder[split].x.sum() == plain[split].x.sum()


def test_folder_without_val_holds_out_a_stratified_tenth(synthetic_csv, tmp_path):
    plain = data.load(synthetic_csv, ("train",))
    for i, (img, label) in enumerate(zip(plain["train"].x.numpy(), plain["train"].y.numpy())):
        out = tmp_path / "train" / data.CLASS_NAMES[label] / f"{i}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), img[0])
    d = data.load(tmp_path, ("train", "val"))
    assert len(d["val"]) == 56 and len(d["train"]) == 504
    assert d["val"].class_counts().min() >= 7


def test_stratified_subset_keeps_proportions():
    y = np.array([0] * 600 + [1] * 300 + [2] * 100)
    split = data.Split(torch.zeros(1000, 1, 48, 48, dtype=torch.uint8), torch.from_numpy(y))
    sub = split.subset(100, seed=3)
    assert sub.class_counts(3).tolist() == [60, 30, 10]
    assert torch.equal(sub.y, split.subset(100, seed=3).y)


def _write(tmp_path, rows, header="emotion,pixels,Usage"):
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


GOOD = "3," + " ".join(["128"] * 2304) + ",Training"
VAL = "3," + " ".join(["128"] * 2304) + ",PublicTest"


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("3," + " ".join(["128"] * 2303) + ",Training", ":3: expected 2304 pixels, found 2303"),
        ("3," + " ".join(["128"] * 2303 + ["12.5"]) + ",Training", ":3: pixel 2303 is '12.5', not an integer 0..255"),
        ("3," + " ".join(["128"] * 2303 + ["abc"]) + ",Training", ":3: pixel 2303 is 'abc'"),
        ("9," + " ".join(["128"] * 2304) + ",Training", ":3: label '9' is not an integer 0..6"),
        ("x," + " ".join(["128"] * 2304) + ",Training", ":3: label 'x' is not an integer 0..6"),
        ("3," + " ".join(["128"] * 2304) + ",Validation", ":3: unknown Usage 'Validation'"),
        ("3," + " ".join(["300"] * 2304) + ",Training", ":3: pixel value 300 outside 0..255"),
        ("3,,Training", ":3: expected 2304 pixels, found 0"),
        ("3,\uff11 " + " ".join(["128"] * 2303) + ",Training", ":3: pixel 0 is '\uff11', not an integer 0..255"),
        ("3,99999999999 " + " ".join(["128"] * 2303) + ",Training", ":3: pixel 0 is '99999999999', outside 0..255"),
        ("3," + " ".join(["128"] * 2304) + "," + "T" * 40, ":3: unknown Usage 'TTTTTTTTTTTTTTTTTTTT...'"),
    ],
)
def test_malformed_rows_fail_with_file_and_line(tmp_path, bad_row, message):
    path = _write(tmp_path, [GOOD, bad_row, VAL])
    with pytest.raises(DataError) as exc:
        data.load(path)
    assert str(exc.value) == f"{path}{message}" or str(exc.value).startswith(f"{path}{message}")
    assert "\n" not in str(exc.value)


def test_a_first_row_longer_than_the_header_is_named_not_read_shifted(tmp_path):
    path = _write(tmp_path, ["3,1," + " ".join(["128"] * 2304) + ",Training", GOOD, VAL])
    with pytest.raises(DataError, match=f"{path}:2: more fields than the header"):
        data.load(path)


def test_data_that_looks_odd_but_is_data_loads(tmp_path):
    """The other side of the generated damage classes: what must keep loading. Pixels spaced unevenly,
    whole grey levels in wider types, labels stored as floats, images of another size, depth or colour."""
    uneven = GOOD.replace("128 128", "128  128", 1).replace("3,128", "3, 128", 1)
    assert len(data.load(_write(tmp_path, [uneven, VAL]))["train"]) == 1
    arrays = {"train_x": np.full((7, 48, 48), 100, np.float16), "train_y": np.arange(7.0),
              "val_x": np.full((7, 48, 48), 100, np.uint16), "val_y": np.arange(7)}  # fmt: skip
    np.savez(tmp_path / "d.npz", **arrays)
    loaded = data.load(tmp_path / "d.npz")
    assert loaded["train"].x.dtype == torch.uint8 and int(loaded["val"].x.max()) == 100
    assert loaded["train"].y.tolist() == list(range(7))
    images = {"a.png": np.full((48, 48), 100, np.uint8), "colour.png": np.full((96, 64, 3), 100, np.uint8),
              "deep.png": np.full((48, 48), 30000, np.uint16), "dot.png": np.full((1, 1), 100, np.uint8)}  # fmt: skip
    for split in ("train", "val", "test"):
        for name, img in images.items():
            (tmp_path / "f" / split / "sad").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "f" / split / "sad" / name), img)
    assert len(data.load(tmp_path / "f", ("train", "val", "test"))["test"]) == 4


def test_skip_mode_drops_and_counts_bad_rows(tmp_path):
    bad = "3," + " ".join(["128"] * 10) + ",Training"
    path = _write(tmp_path, [GOOD, bad, bad, VAL])
    with pytest.raises(DataError, match=r":3: expected 2304 pixels, found 10 \(and 1 more bad rows"):
        data.load(path)
    d = data.load(path, on_bad="skip")
    assert d.skipped_rows == 2 and len(d["train"]) == 1 and len(d["val"]) == 1


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "data file or folder not found"),
        ("a,b\n1,2\n", "missing column(s) ['Usage', 'emotion', 'pixels']"),
        ("emotion,pixels,Usage\n" + GOOD + "\n", "no rows with Usage PublicTest"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "f.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as exc:
        data.load(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_data_path_comes_from_flag_or_environment(monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    with pytest.raises(DataError, match="pass --data PATH"):
        data.resolve_data_path(None)
    monkeypatch.setenv(data.DATA_ENV, "/x/fer.csv")
    assert data.resolve_data_path(None) == "/x/fer.csv"
    assert data.resolve_data_path("/y.csv") == "/y.csv"


def test_normalize_agrees_for_numpy_and_torch():
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    assert np.allclose(data.normalize(x), data.normalize(torch.from_numpy(x)).numpy())


def test_synthetic_is_balanced_and_deterministic():
    x, y = data.synthetic(140, seed=5)
    assert np.bincount(y).tolist() == [20] * 7
    assert np.array_equal(x, data.synthetic(140, seed=5)[0])


@requires_real_data()
def test_real_fer2013_has_the_official_splits():
    d = data.load(REAL_DATA, ("train", "val", "test"))
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 28709, "val": 3589, "test": 3589}
    assert d["train"].class_counts().tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert d["test"].class_counts().tolist() == [491, 55, 528, 879, 594, 416, 626]
