"""The hard benchmark (sample.difficulty: hard): deterministic, hard in the ways it claims, and
wired through the sample stage."""

import numpy as np
import pytest
import yaml

from inception_pipeline.errors import PipelineError
from inception_pipeline.synthetic import CLASSES, DEMO
from inception_pipeline.synthetic_hard import HARD, HARD_CLASSES, HARD_FONTS, fonts_with
from stages import sample


def test_hard_scene_is_deterministic_and_boxes_lie_in_the_image():
    for class_index, (label, glyph) in enumerate(list(HARD_CLASSES.items())[:4]):
        for image_index in range(5):
            image, objects = HARD.render(3, class_index, image_index, label, glyph)
            again, objects_again = HARD.render(3, class_index, image_index, label, glyph)
            assert np.array_equal(np.asarray(image), np.asarray(again))
            assert objects == objects_again and objects
            for obj in objects:
                xmin, ymin, xmax, ymax = obj.box
                assert 0 <= xmin < xmax <= image.width and 0 <= ymin < ymax <= image.height
                assert obj.label == label
    other, _ = HARD.render(4, 0, 0, "O", "O")
    assert not np.array_equal(np.asarray(other), np.asarray(HARD.render(3, 0, 0, "O", "O")[0]))


def test_every_glyph_is_drawn_by_a_font_that_has_it():
    """A font without the glyph draws a placeholder box, the same for every class."""
    for glyph in HARD_CLASSES.values():
        fonts = fonts_with(glyph)
        assert fonts and set(fonts) <= set(HARD_FONTS)
    assert len(fonts_with("E")) == len(HARD_FONTS)  # every font has the Latin letters


def test_object_scales_span_a_wide_range():
    """Box sides from well under a third to most of the image, the same spread in each class."""
    ratios = {}
    for class_index, (label, glyph) in enumerate(list(HARD_CLASSES.items())[:3]):
        for image_index in range(30):
            image, objects = HARD.render(0, class_index, image_index, label, glyph)
            ratios.setdefault(label, []).extend(
                max(o.box[2] - o.box[0], o.box[3] - o.box[1]) / min(image.size) for o in objects)
    everything = np.concatenate(list(ratios.values()))
    assert everything.min() < 0.3 and everything.max() > 0.75
    medians = [np.median(r) for r in ratios.values()]
    assert max(medians) - min(medians) < np.std(everything)


def test_scenes_are_noisier_than_the_demo():
    """Sensor noise and texture: the hard scenes' high frequencies carry more energy."""
    def high_frequency(image):
        pixels = np.asarray(image.convert("L"), dtype=float)
        return np.abs(np.diff(pixels, axis=1)).mean()
    label, glyph = next(iter(CLASSES.items()))
    demo = [high_frequency(DEMO.render(0, 0, i, label, glyph)[0]) for i in range(10)]
    hard = [high_frequency(HARD.render(0, 0, i, "O", "O")[0]) for i in range(10)]
    assert np.median(hard) > np.median(demo)


def test_sample_stage_writes_the_hard_benchmark(in_tmp, default_params):
    params = default_params
    params["sample"].update(difficulty="hard", classes=3, images_per_class=2)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    sample.main()
    folders = sorted(p.name for p in (in_tmp / "data/sample").iterdir())
    assert folders == sorted(list(HARD_CLASSES)[:3])
    assert all(len(list((in_tmp / "data/sample" / f).glob("*.jpg"))) == 2 for f in folders)


def test_sample_stage_refuses_more_classes_than_the_difficulty_has(in_tmp, default_params):
    params = default_params
    params["sample"].update(difficulty="hard", classes=len(HARD_CLASSES) + 1)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    with pytest.raises(PipelineError, match="sample.classes=21: sample.difficulty=hard has 20"):
        sample.main()
