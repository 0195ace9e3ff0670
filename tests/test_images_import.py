"""Importing the image code changes no process-wide setting: PIL's decompression-bomb limit and
OpenCV's IPP stay as they are until a stage or command calls ``configure_decoders()``."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("import json, cv2\nfrom PIL import Image\n"
            "def settings(): return [Image.MAX_IMAGE_PIXELS, cv2.ipp.useIPP()]\n")


def settings_around(code: str) -> tuple[list, list]:
    """PIL's and OpenCV's settings in a fresh Python before and after ``code`` runs."""
    program = (SETTINGS + "before = settings()\n" + code
               + "\nprint(json.dumps([before, settings()]))")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    before, after = json.loads(done.stdout.splitlines()[-1])
    return before, after


def test_importing_the_image_code_changes_no_setting():
    before, after = settings_around("import inception_pipeline.images, "
                                    "inception_pipeline.cropping, inception_pipeline.predict")
    assert after == before
    assert before[0] is not None  # PIL's own limit, which the stages lift


def test_configure_decoders_leaves_crop_max_pixels_the_only_limit():
    _, after = settings_around("from inception_pipeline.images import configure_decoders\n"
                               "configure_decoders()")
    assert after == [None, False]
