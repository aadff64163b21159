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


def test_report__opens_with_its_verdict_and_ends_with_how_to_read_in_html_and_markdown(tmp_path):
    notes = [f"Made by {EVIL} with `truthsteer quickstart --x`.", "A second note."]
    html_path, md_path = write_report([_evil_run(tmp_path)], tmp_path / "out", notes=notes)
    html, md = html_path.read_text(), md_path.read_text()
    assert html.split("</h1>", 1)[1].lstrip().startswith('<h2 id="verdict">Verdict</h2>')
    guide = html.index('<h2 id="how-to-read">How to read this report</h2>')
    assert html.index('<h2 id="verdict">') < html.index("<table")
    assert html.rindex("</table>") < guide
    # the notes and the definitions moved to the end, not dropped, and still escaped
    assert html.index("Made by &lt;script&gt;") > guide and html.index("A second note.") > guide
    assert "<code>truthsteer quickstart --x</code>" in html
    assert html.index("<strong>MC1/MC2</strong> are TruthfulQA") > guide
    assert html.index("is chosen by cross-fitting: the questions are split") > guide
    # the Markdown twin in the same order
    lines = md.splitlines()
    headings = [ln for ln in lines if ln.startswith("## ")]
    assert headings[0] == "## Verdict" and headings[-1] == "## How to read this report"
    tables = [k for k, ln in enumerate(lines) if ln.startswith("|")]
    assert lines.index("## Verdict") < tables[0] < tables[-1] < \
        lines.index("## How to read this report") < lines.index(
            "> Made by &lt;script&gt;alert(\"x\")&lt;/script&gt; with `truthsteer quickstart "
            "--x`.")
    verdict = md.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    assert "beat the baseline" in verdict and "Cohen's κ" in verdict and "|" not in verdict


def test_html__long_names_in_table_cells_may_wrap_but_read_the_same(tmp_path):
    html_path, md_path = write_report([_evil_run(tmp_path)], tmp_path / "out")
    html = html_path.read_text()
    assert "<td>blocks.<wbr>1.<wbr>hook_<wbr>resid_<wbr>post</td>" in html
    assert "<th>% true×<wbr>informative</th>" in html
    assert "blocks.1.hook\\_resid\\_post" in md_path.read_text()  # Markdown unchanged
    assert '<div class="table-wrap"><table class="headline">' in html
