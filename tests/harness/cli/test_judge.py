"""`truthsteer judge`'s word on where the judge's measured agreement reaches."""

from harness.cli.judge import outside_summary


def test_outside_summary__warns_with_the_share_outside_and_a_spot_check_size():
    text = outside_summary({"baseline": (0, 50), "md__L15__m3": (40, 50)})
    assert text.startswith("warning: 40 of 100 answers (40%) lie outside")
    assert "md__L15__m3 40/50" in text and "baseline" not in text.split("(length")[1]
    assert "Label about 40 of them" in text  # all 40: fewer than the ~97 for +-10 points
    assert outside_summary({"a": (0, 10)}).startswith("validated text: all 10 answers")
    assert "records none" in outside_summary(None)
