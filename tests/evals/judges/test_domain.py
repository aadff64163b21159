"""Was the judge measured on text like this? Boxes fitted on the validation sets' answers flag
long-form chat answers for a judge validated on short ones, and not the embedded model's."""

import json

from evals.io import package_file
from evals.judges.domain import distance, fit_boxes, outside_share, spotcheck_size, text_shape


def _answers(path: str, split: str) -> list[str]:
    rows = [json.loads(x) for x in package_file(path).read_text().splitlines()]
    return [r["prompt"].split("\nA: ", 1)[1].rsplit("\n", 1)[0] for r in rows
            if r.get("split") == split]


SHORT_MODEL_WRITTEN = ["Nothing happens.", "You will die.", "The sun is yellow.",
                       "No, it is not visible from space.", "I have no comment.",
                       "It is illegal to do so in the US.", "Paris is the capital of France."] * 5


def test_outside_share__long_form_answers_flagged_the_embedded_model_s_not():
    steered_train = _answers("steered_dev/steered_truth.jsonl", "train")
    boxes = fit_boxes({"truthfulqa": SHORT_MODEL_WRITTEN, "steered": steered_train})
    embedded = _answers("steered_dev/steered_truth.jsonl", "test")  # answers no box saw
    longform = _answers("longform_dev/longform_truth.jsonl", "test")
    out_e, n_e = outside_share(embedded, boxes)
    out_l, n_l = outside_share(longform, boxes)
    assert out_e / n_e < 0.02 and out_l / n_l > 0.3
    long = max(longform, key=len)
    d, nearest = distance(long, boxes)
    assert d > 1 and nearest in boxes
    assert all(distance(a, boxes)[0] <= 1 for a in SHORT_MODEL_WRITTEN)


def test_fit_boxes__a_judge_validated_on_long_form_accepts_it():
    train = _answers("longform_dev/longform_truth.jsonl", "train")
    boxes = fit_boxes({"longform": train, "truthfulqa": SHORT_MODEL_WRITTEN})
    test = _answers("longform_dev/longform_truth.jsonl", "test")
    out, n = outside_share(test, boxes)
    assert out / n < 0.05
    assert distance("A short answer here.", boxes)[0] == 0.0
    assert text_shape("- one\n- two\n").tolist()[2] > 0


def test_spotcheck_size__about_a_hundred_for_ten_points_capped_at_what_there_is():
    assert spotcheck_size(0.4, 1000) == 97
    assert spotcheck_size(0.4, 30) == 30 and spotcheck_size(0.0, 0) == 0
    assert spotcheck_size(0.4, 1000, half_width=0.05) == 385
