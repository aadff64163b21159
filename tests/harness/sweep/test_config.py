import pytest

from harness.config import ConfigError
from harness.sweep.config import BASELINE, SET_HOOK, load_config, parse_config
from harness.sweep.grid import expand_grid, parse_shard, shard_cells


def base_config(**overrides) -> dict:
    cfg = {
        "model": {"name": "some-model"},
        "data": {"questions": 8, "folds": 2},
        "generation": {"max_new_tokens": 8},
        "metrics": {"answer_questions": 4},
        "sweep": {"magnitudes": [0, 1, 2]},
        "directions": [
            {"name": "iti", "kind": "iti", "top_k": 2},
            {"name": "md", "kind": "meandiff",
             "hooks": ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post"]},
            {"name": "rnd", "kind": "random", "match": "md", "magnitudes": [0, 5]},
            {"name": "vec", "kind": "spec", "spec": "random:3", "hooks": ["blocks.0.hook_mlp_out"],
             "scale": "raw"},
        ],
    }
    cfg.update(overrides)
    return cfg


def test_expand_grid__one_shared_baseline_and_no_zero_cells():
    cells = expand_grid(parse_config(base_config()))
    ids = [c.cell_id for c in cells]
    assert ids[0] == BASELINE and ids.count(BASELINE) == 1
    assert len(ids) == len(set(ids))
    assert all(c.magnitude != 0 for c in cells[1:])
    # iti: its own heads (SET_HOOK) x 2 magnitudes; md: 2 hooks x 2; rnd: md's hooks x 1; vec: 1 x 2
    assert len(cells) == 1 + 2 + 4 + 2 + 2
    assert {c.hook for c in cells if c.direction == "iti"} == {SET_HOOK}
    assert {c.hook for c in cells if c.direction == "rnd"} == {"blocks.1.hook_resid_post",
                                                              "blocks.0.hook_resid_post"}
    assert "md__blocks.1.hook_resid_post__m2" in ids and "rnd__blocks.0.hook_resid_post__m5" in ids


def test_expand_grid__no_zero_means_no_baseline():
    cells = expand_grid(parse_config(base_config(sweep={"magnitudes": [1.5]}) | {
        "directions": [{"name": "v", "kind": "spec", "spec": "random:1",
                        "hooks": ["blocks.0.hook_resid_post"]}]}))
    assert [c.cell_id for c in cells] == ["v__blocks.0.hook_resid_post__m1.5"]


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(bogus=1), r"unknown key\(s\) bogus \(valid: data, directions, generation"),
    (lambda c: c["data"].update(question=3), (r"\[data\]: unknown key\(s\) question \(valid: "
                                              r"fold_seed, folds, questions, truthfulqa\)")),
    (lambda c: c["generation"].update(max_tokens=3), r"\[generation\]: unknown key\(s\) max_tokens"),
    (lambda c: c["directions"][1].update(top_k=3), (r"'md' \(kind meandiff\): unknown key\(s\) "
                                                    r"top_k \(valid: hooks, kind, magnitudes, name, "
                                                    r"scale\)")),
    (lambda c: c["directions"][0].update(kind="caa"), r"kind 'caa' is unknown"),
    (lambda c: c["directions"][2].update(match="nope"), r"match = 'nope' must name"),
    (lambda c: c["sweep"].update(magnitudes=[0, 1, 1]), r"magnitudes repeats"),
    (lambda c: c["sweep"].update(positions="end"), r"positions 'end' is unknown"),
    (lambda c: c["data"].update(folds=1), r"folds=1 must be an integer >= 2"),
    (lambda c: c["directions"][0].update(method="svm"), r"method 'svm' is unknown"),
    (lambda c: c["directions"][1].update(name="md", hooks=[]), r"meandiff needs hooks"),
    (lambda c: c["directions"].append({"name": "md", "kind": "random", "hooks": ["x"]}),
     r"name\(s\) md used twice"),
    (lambda c: c["metrics"].update(answers=False, mc=False, side_effects=False),
     r"nothing to measure"),
    (lambda c: c["metrics"].update(answer_questions=0), r"answer_questions=0 must be"),
])
def test_parse_config__bad_input_gives_one_line_errors(mutate, message):
    cfg = base_config()
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(cfg)
    assert "\n" not in str(err.value)


def test_load_config__toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_shard_cells__partition_is_disjoint_complete_and_balanced():
    cells = expand_grid(parse_config(base_config()))
    shards = [shard_cells(cells, (i, 3)) for i in range(3)]
    ids = [c.cell_id for s in shards for c in s]
    assert sorted(ids) == sorted(c.cell_id for c in cells)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_cells(cells, (1, 3)) == shards[1]  # deterministic
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "1-3", "-1/2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_shipped_example_configs_parse():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[3] / "evals").glob("*.toml"))
    assert any(p.name == "smoke.toml" for p in examples)
    for path in examples:
        cfg = load_config(path)
        assert expand_grid(cfg)[0].cell_id == BASELINE


def test_expand_grid__feature_specs_default_to_the_dictionary_hook(tmp_path):
    import json

    flat, saelens6 = tmp_path / "flat", tmp_path / "v6"
    flat.mkdir()
    saelens6.mkdir()
    (flat / "cfg.json").write_text(json.dumps({"hook_name": "blocks.3.hook_resid_post"}))
    (saelens6 / "cfg.json").write_text(json.dumps({"metadata": {"hook_name": "blocks.5.hook_mlp_out"}}))
    cfg = parse_config(base_config(directions=[
        {"name": "f1", "kind": "spec", "spec": f"feature:{flat}:7"},
        {"name": "f2", "kind": "spec", "spec": f"feature:{saelens6}:2", "magnitudes": [0, -4]},
        {"name": "f3", "kind": "spec", "spec": f"feature:{flat}:1",
         "hooks": ["blocks.4.hook_resid_post"]}]))
    ids = [c.cell_id for c in expand_grid(cfg)]
    assert "f1__blocks.3.hook_resid_post__m2" in ids
    assert "f2__blocks.5.hook_mlp_out__m-4" in ids
    assert "f3__blocks.4.hook_resid_post__m1" in ids
    bad = parse_config(base_config(directions=[
        {"name": "f", "kind": "spec", "spec": f"feature:{tmp_path / 'none'}:1"}]))
    with pytest.raises(ConfigError, match="no dictionary cfg.json"):
        expand_grid(bad)
