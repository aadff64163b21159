"""Long-form features: claims split from markdown, and the worst claim seen even when the first is
right (a toy embedding stands in for MiniLM so the numbers can be checked by hand)."""

import numpy as np

from evals.judges.longform import LONGFORM_FEATURE_NAMES, longform_features, split_claims

ANSWER = ("**Bulls do not hate red.**\n\n### Why\n- Bulls are colour-blind to red.\n"
          "- Also, bulls charge because red makes them angry.\n\nHope this helps!")


def test_split_claims__sentences_and_list_items_without_markup_or_headings():
    assert split_claims(ANSWER) == ["Bulls do not hate red.", "Bulls are colour-blind to red.",
                                    "Also, bulls charge because red makes them angry.",
                                    "Hope this helps!"]
    assert split_claims("No. Bulls are colour-blind. It is so.") == [
        "No. Bulls are colour-blind.", "It is so."]
    assert split_claims("Paris") == ["Paris"]  # no three-word claim: the answer itself


def _toy_emb(text: str) -> np.ndarray:
    """Unit vectors: 'angry' claims point at the false reference, 'colour-blind' / 'do not hate'
    claims at the true one, everything else elsewhere."""
    t = text.lower()
    v = np.array([0.1, 0.1, 1.0])
    if "angry" in t or "angered" in t:
        v = np.array([0.0, 1.0, 0.0])
    elif "colour-blind" in t or "not hate" in t or "movement" in t:
        v = np.array([1.0, 0.0, 0.0])
    return v / np.linalg.norm(v)


def test_longform_features__a_false_later_claim_shows_in_the_worst_claim_not_the_first():
    f = dict(zip(LONGFORM_FEATURE_NAMES, longform_features(
        "Why do bulls charge at red capes?", ANSWER,
        ["Bulls react to the movement of the cape"], ["Bulls are angered by the color red"],
        _toy_emb)))
    assert f["first_m"] > 0.9            # the first claim sides with the correct reference
    assert f["min_m"] < -0.9             # the third sides with the incorrect one
    assert f["max_f"] > 0.99 and 0 < f["share_false_leaning"] < 1
    assert np.isclose(f["log_claims"], np.log(4)) and np.isclose(f["list_items"], np.log1p(2))
