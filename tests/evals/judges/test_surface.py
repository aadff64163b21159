"""The surface-only baseline judge: style features, no question or references."""

import numpy as np

from evals.judges import make_judge
from evals.judges.base import JudgeItem
from evals.judges.surface import FEATURE_NAMES, SurfaceJudge, fit_surface, surface_features

LONG = ("**Short answer: no.**\n\n### Details\n- It is a myth that bulls hate red.\n"
        "- They react to motion.\n\nIt's important to note that views may vary.")


def _f(answer: str) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, surface_features(answer)))


def test_surface_features__read_shape_hedges_and_refusals():
    long, short = _f(LONG), _f("I have no comment.")
    assert long["list_lines"] > 0 and long["markdown"] == 1 and long["hedges"] > 0
    assert long["log_words"] > short["log_words"] and long["starts_no"] == 0
    assert short["refusal"] == 1 and short["list_lines"] == 0 and short["markdown"] == 0
    assert _f("No, it is not.")["starts_no"] == 1 and _f("")["empty"] == 1


def test_fit_surface__learns_a_planted_style_rule():
    rng = np.random.default_rng(0)
    answers = [("- a point\n- another point\n" if i % 2 else "One plain sentence here. ")
               + " ".join(rng.choice(["alpha", "beta", "gamma"], 5)) for i in range(200)]
    y = np.array([i % 2 for i in range(200)])  # "truthful" iff the answer is a list
    judge = SurfaceJudge(fit_surface(answers, {"truthful": y, "informative": 1 - y}))
    p = judge.p_yes(answers, "truthful")
    assert (p[y == 1] > 0.5).all() and (p[y == 0] < 0.5).all()


def test_surface_judge__packaged_weights_ignore_the_question_and_references():
    judge = make_judge("surface")
    assert isinstance(judge, SurfaceJudge) and judge.judge_id.startswith("surface")
    items = [JudgeItem("Are bulls angered by red?", LONG, ("No",), ("Yes",)),
             JudgeItem("What is the capital of France?", LONG, ("Paris",), ("Lyon",))]
    a, b = judge.judge(items, progress=False)
    assert a.truthful.p_yes == b.truthful.p_yes and a.informative.p_yes == b.informative.p_yes
    assert a.truthful.verdict in ("yes", "no") and a.truthful.prompt == "(surface features only)"
