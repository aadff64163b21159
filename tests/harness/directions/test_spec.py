"""The one direction-SPEC parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.directions.spec import FeatureSpec, FileSpec, RandomSpec, parse_spec


@pytest.mark.parametrize(("text", "want"), [
    ("random:3", RandomSpec(3)),
    ("random:-2", RandomSpec(-2)),
    ("feature:/d/topk-1x:7", FeatureSpec("/d/topk-1x", 7)),
    ("feature:C:/dicts/a:12", FeatureSpec("C:/dicts/a", 12)),  # the last ':' ends the location
    ("dirs/iti.safetensors", FileSpec(Path("dirs/iti.safetensors"))),
    ("dirs/iti.safetensors:all", FileSpec(Path("dirs/iti.safetensors"), "all")),
    ("v.safetensors:truth", FileSpec(Path("v.safetensors"), "truth")),
])
def test_parse_spec__each_form_and_its_text_round_trips(text, want):
    got = parse_spec(text)
    assert got == want and str(got) == text


@pytest.mark.parametrize(("text", "message"), [
    ("random:x", "expected random:SEED"),
    ("feature:7", "expected feature:DIR:ID"),
    ("feature:/d:x", "expected feature:DIR:ID"),
    ("nonsense", "unknown SPEC"),
])
def test_parse_spec__bad_text_names_the_input_and_the_forms(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_spec(text, "--direction")
    assert str(err.value).startswith(f"--direction {text}:")


def test_spec__built_in_code_prints_its_canonical_form():
    assert str(RandomSpec(4)) == "random:4"
    assert str(FeatureSpec("out/dict", 9)) == "feature:out/dict:9"


def test_file_spec__is_set_only_for_a_direction_set_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from harness.directions import Direction
    from harness.directions.store import DirectionSet, is_direction_set, save_direction_set

    plain = tmp_path / "v.safetensors"
    save_file({"v": torch.ones(4)}, str(plain))
    dset = tmp_path / "s.safetensors"
    save_direction_set(dset, DirectionSet("meandiff", (Direction("blocks.0.hook_resid_post",
                                                                 torch.ones(4) / 2),)))
    assert is_direction_set(parse_spec(str(dset)))
    assert not is_direction_set(parse_spec(str(plain)))
    assert not is_direction_set(parse_spec(str(tmp_path / "absent.safetensors")))
