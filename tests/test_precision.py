"""train.precision: auto picks the dtype policy from the machine (pure function of /proc/cpuinfo's
text and the GPU list)."""

import pytest

from inception_pipeline.params import problems
from inception_pipeline.runtime import precision_policy

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512bw "
        "avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
# A flag of that name in another line is not a CPU flag.
BUGS_ONLY = "flags\t\t: fpu sse2 avx2\nmodel name\t: avx512_bf16 emulation\n"


@pytest.mark.parametrize("cpuinfo, gpus, expected", [
    (ZEN4, [], "mixed_bfloat16"),
    (SAPPHIRE_RAPIDS, [], "mixed_bfloat16"),
    (SKYLAKE, [], "float32"),
    (BUGS_ONLY, [], "float32"),
    ("", [], "float32"),  # no /proc/cpuinfo (not Linux)
    (SKYLAKE, ["/physical_device:GPU:0"], "mixed_float16"),
    (ZEN4, ["/physical_device:GPU:0"], "mixed_float16"),
])
def test_auto_follows_the_machine(cpuinfo, gpus, expected):
    assert precision_policy("auto", cpuinfo, gpus) == expected


@pytest.mark.parametrize("setting", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_an_explicit_setting_is_kept_whatever_the_machine(setting):
    assert precision_policy(setting, ZEN4, ["/physical_device:GPU:0"]) == setting


def test_auto_is_a_valid_setting_and_others_are_not():
    assert not [p for p in problems({"train": {"precision": "auto"}}) if "precision" in p]
    assert [p for p in problems({"train": {"precision": "bf16"}}) if "precision" in p]
