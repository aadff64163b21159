"""Escaping and self-containment of the HTML report and its Markdown twin."""

from __future__ import annotations

import base64
import re

from reports.build import write_report
from reports.render import md_escape
from tests.reports.conftest import hand_cell, hand_run_info, hand_scores

EVIL = '<script>alert("x")</script>'


def _evil_run(tmp_path):
    """Script tags in an answer, a question, a human label, the judge id and the model name;
    pipes and newlines in an answer."""
    run = tmp_path / "run"
    answers = {}
    for cid, d, hook, m in (("baseline", "none", "none", 0.0),
                            ("d__blocks.1.hook_resid_post__m4", "d", "blocks.1.hook_resid_post",
                             4.0)):
        texts = {0: f"Fine {EVIL} answer", 1: "a | b\nc || d", 2: "plain"}
        hand_cell(run, cid, d, hook, m, texts, question=f"Q{{q}} {EVIL}?")
        answers.update({(cid, q): t for q, t in texts.items()})
    verdicts = {k: ("yes" if k[1] != 1 or k[0] != "baseline" else "no", "yes") for k in answers}
    hand_scores(run, verdicts, answers, judge_id=f"evil:{EVIL}")
    hand_run_info(run, model=f"m{EVIL}")
    (run / "labels").mkdir()
    (run / "labels" / "human.csv").write_text(
        "id,cell_id,question_id,truthful,informative,weight\n"
        f"baseline/0,baseline,0,yes,\"{EVIL.replace(chr(34), chr(34) * 2)}\",1\n"
        "baseline/1,baseline,1,no,yes,1\n")
    return run


def test_html__text_from_answers_questions_labels_and_judges_is_escaped(tmp_path):
    html_path, _ = write_report([_evil_run(tmp_path)], tmp_path / "out", n_examples=3)
    html = html_path.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Fine &lt;script&gt;" in html          # the answer
    assert "Q0 &lt;script&gt;" in html            # the question
    assert "evil:&lt;script&gt;" in html          # the judge id from the score rows
    assert "m&lt;script&gt;" in html              # the model name from run.json
    assert "informative: &#x27;&lt;script&gt;" in html  # an odd human label, shown as text


def test_html__self_contained_no_network_and_png_data_uris(tmp_path):
    html = write_report([_evil_run(tmp_path)], tmp_path / "out")[0].read_text()
    assert 'http-equiv="Content-Security-Policy"' in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html, re.IGNORECASE)
    assert "<link" not in html and "@import" not in html
    uris = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    assert uris and all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)


def test_markdown__answer_text_cannot_break_tables_or_inject_markup(tmp_path):
    md = write_report([_evil_run(tmp_path)], tmp_path / "out", n_examples=3)[1].read_text()
    assert "<script" not in md.lower()
    for table in re.findall(r"((?:^\|.*\|\n)+)", md, re.MULTILINE):
        lines = table.splitlines()
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
        assert len(widths) == 1, f"a row has a different number of cells:\n{table}"
    assert r"a \| b<br>c \|\| d" in md
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert figures and all((tmp_path / "out" / f).read_bytes()[:4] == b"\x89PNG" for f in figures)


def test_md_escape__markdown_punctuation_and_entities():
    assert md_escape("*a* _b_ `c` [d](e) #f <g> & \\") == \
        r"\*a\* \_b\_ \`c\` \[d\](e) \#f &lt;g&gt; &amp; \\"
    assert md_escape("x\r\ny\nz") == "x<br>y<br>z"
