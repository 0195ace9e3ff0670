"""Pure logic of sample, resize, pack and split, and the data stages wired to files."""

import numpy as np
import pytest
import yaml

from inception_pipeline.crop_store import ShardWriter, load_crop, read_shard_array
from inception_pipeline.errors import PipelineError
from inception_pipeline.images import resize_image
from inception_pipeline.io import read_csv, write_npy_rows
from inception_pipeline.layout import CROPS_DIR
from inception_pipeline.splitting import ClassTooSmall, stratified_split
from inception_pipeline.synthetic import CLASSES, render_scene
from stages import crop, pack, resize, sample, split
from stages.pack import class_index


def test_scene_is_deterministic_and_boxes_hold_the_object():
    image, objects = render_scene(7, 3, 11, "star", "★")
    again, objects_again = render_scene(7, 3, 11, "star", "★")
    assert np.array_equal(np.asarray(image), np.asarray(again)) and objects == objects_again
    other, _ = render_scene(8, 3, 11, "star", "★")
    assert not np.array_equal(np.asarray(image), np.asarray(other))
    for obj in objects:
        xmin, ymin, xmax, ymax = obj.box
        assert 0 <= xmin < xmax <= image.width and 0 <= ymin < ymax <= image.height
        assert obj.label == "star"


def test_object_size_does_not_follow_the_class():
    """No size shortcut: per-class mean box widths differ by less than one standard deviation."""
    stats = []
    for class_index_, (label, glyph) in enumerate(list(CLASSES.items())[:4]):
        sizes = [(o.box[2] - o.box[0]) for i in range(40)
                 for o in render_scene(0, class_index_, i, label, glyph)[1]]
        stats.append((np.mean(sizes), np.std(sizes)))
    means = [m for m, _ in stats]
    assert max(means) - min(means) < min(s for _, s in stats)


@pytest.mark.parametrize("shape", [(30, 90, 3), (90, 30, 3), (200, 150, 3), (10, 10, 3)])
def test_resize_modes(shape):
    image = np.full(shape, 255, np.uint8)
    stretched = resize_image(image, 75, "stretch")
    padded = resize_image(image, 75, "pad")
    assert stretched.shape == padded.shape == (75, 75, 3)
    assert stretched.min() == 255
    if shape[0] != shape[1]:  # the short side is padded with black, the long side filled
        assert padded.min() == 0 and padded.max() == 255
        assert padded[37, :].min() == 255 if shape[1] > shape[0] else padded[:, 37].min() == 255


def test_shards_give_back_each_array_and_start_a_new_shard_when_full(tmp_path):
    arrays = [np.full((h, 4, 3), h, np.uint8) for h in (1, 2, 3, 4)]  # 12, 24, 36, 48 bytes
    with ShardWriter(tmp_path, "crops", max_bytes=40) as shards:
        places = [shards.write(a) for a in arrays]
    # A shard takes arrays until the next would pass max_bytes; an array bigger than max_bytes
    # still gets a shard of its own.
    assert places == [("crops-000.bin", 0), ("crops-000.bin", 12), ("crops-001.bin", 0),
                      ("crops-002.bin", 0)]
    for (shard, offset), array in zip(places, arrays, strict=True):
        assert np.array_equal(read_shard_array(tmp_path, shard, offset, array.shape), array)
    with pytest.raises(PipelineError, match=r"crops-002.bin: truncated \(48 of 96 bytes"):
        read_shard_array(tmp_path, "crops-002.bin", 0, (8, 4, 3))


def test_npy_rows_are_written_in_order_and_a_wrong_row_is_named(tmp_path):
    rows = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    write_npy_rows(tmp_path / "a.npy", (3, 2, 2, 3), iter(rows), name_of="r{}".format)
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.stack(rows))
    with pytest.raises(PipelineError, match=r"r1: shape \(3, 2, 3\) uint8, expected \(2, 2, 3\)"):
        write_npy_rows(tmp_path / "b.npy", (3, 2, 2, 3),
                       [rows[0], np.zeros((3, 2, 3), np.uint8)], name_of="r{}".format)
    with pytest.raises(PipelineError, match="2 rows written, 3 expected"):
        write_npy_rows(tmp_path / "b.npy", (3, 2, 2, 3), rows[:2], name_of="r{}".format)
    assert not (tmp_path / "b.npy").exists()  # nothing half-written


def test_class_index_sorts_names():
    classes, labels = class_index(["b", "a", "고양이", "b"])
    assert classes == ["a", "b", "고양이"]
    assert labels.tolist() == [1, 0, 2, 1]


def test_stratified_split_covers_every_class_in_every_split():
    labels = np.repeat(np.arange(5), [3, 4, 10, 20, 50])
    singletons = np.arange(len(labels))  # every crop from its own photo
    parts = stratified_split(labels, singletons, 0.15, 0.15, seed=1)
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and complete
    for name, idx in parts.items():
        assert set(labels[idx]) == set(range(5)), name
    assert np.sum(labels[parts["test"]] == 4) == round(50 * 0.15)
    again = stratified_split(labels, singletons, 0.15, 0.15, seed=1)
    assert all(np.array_equal(parts[name], again[name]) for name in parts)
    other_seed = stratified_split(labels, singletons, 0.15, 0.15, seed=2)
    assert not np.array_equal(parts["test"], other_seed["test"])


def test_split_keeps_every_copy_and_every_crop_of_a_photo_in_one_split():
    """Group 100 is one picture in classes 0 and 1; group 101 a photo of four class-2 boxes."""
    labels = np.repeat(np.arange(3), [20, 10, 12])
    groups = np.arange(len(labels))
    groups[[0, 1, 20]] = 100  # two crops in class 0, one in class 1
    groups[30:34] = 101
    for seed in range(20):
        parts = stratified_split(labels, groups, 0.15, 0.15, seed=seed)
        assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(labels)))
        split_of = {int(i): name for name, idx in parts.items() for i in idx}
        for group in (100, 101):
            assert len({split_of[i] for i in np.flatnonzero(groups == group)}) == 1, seed
        for name, idx in parts.items():
            assert set(labels[idx]) == {0, 1, 2}, (seed, name)


def test_split_refuses_a_class_too_small_to_stratify():
    with pytest.raises(ClassTooSmall) as err:
        stratified_split(np.array([0, 0, 0, 1, 1]), np.arange(5), 0.2, 0.2, seed=0)
    assert (err.value.label, err.value.count) == (1, 2)
    with pytest.raises(ClassTooSmall):  # three crops, but of two photos
        stratified_split(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 3, 3, 4]), 0.2, 0.2,
                         seed=0)


def test_data_stages_end_to_end_without_dvc(in_tmp, default_params):
    """sample -> crop -> resize -> pack -> split, run as the stage functions."""
    params = default_params
    params["sample"].update(classes=3, images_per_class=4)
    params["data"]["workers"] = 2
    params["resize"]["size"] = 75
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for stage in (sample, crop, resize, pack, split):
        stage.main()
    images = np.load(in_tmp / "data/packed/images.npy", mmap_mode="r")
    labels = np.load(in_tmp / "data/packed/labels.npy")
    assert images.dtype == np.uint8 and images.shape[1:] == (75, 75, 3)
    assert len(images) == len(labels) >= 12 and set(labels.tolist()) == {0, 1, 2}
    test_idx = np.load(in_tmp / "data/split/test.npy")
    assert set(labels[test_idx].tolist()) == {0, 1, 2}
    # Row i of images.npy is manifest row i's crop, resized.
    rows = read_csv(in_tmp / "data/packed/items.csv")
    crops = read_csv(in_tmp / "data/crops/manifest.csv")
    assert [r["crop"] for r in rows] == [r["crop"] for r in crops]
    for i, row in enumerate(crops):
        assert np.array_equal(images[i], resize_image(load_crop(row, CROPS_DIR), 75, "stretch"))
    # The same bytes from one worker as from two.
    written = {p: (in_tmp / p).read_bytes() for p in ("data/crops/crops-000.bin",
                                                       "data/crops/manifest.csv",
                                                       "data/packed/images.npy")}
    params["data"]["workers"] = 1
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for stage in (crop, resize, pack):
        stage.main()
    assert all((in_tmp / p).read_bytes() == data for p, data in written.items())
