"""The report opened from disk in headless Chromium: the table and the figures are really there."""

from __future__ import annotations

import pytest

from reports.build import write_report
from tests.helpers import headless_chromium
from tests.reports.test_render import _evil_run


@pytest.mark.slow
def test_report__opens_from_disk_with_table_and_decoded_figures_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By

    html_path, _ = write_report([_evil_run(tmp_path)], tmp_path / "out", n_examples=3)
    driver = headless_chromium(window_size="1400,1000", browser_logs=True)
    try:
        driver.get(html_path.resolve().as_uri())
        tables = driver.find_elements(By.CSS_SELECTOR, "table.headline")
        assert len(tables) == 2  # the side-by-side table and the run's headline table
        headline = tables[1]
        headers = [th.text for th in headline.find_elements(By.TAG_NAME, "th")]
        assert "% true×informative" in headers and "MC2" in headers
        rows = headline.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == 2 and "baseline" in rows[0].text
        images = driver.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 2
        for img in images:
            assert img.get_attribute("src").startswith("data:image/png;base64,")
            # decoded and laid out by the browser itself
            assert driver.execute_script("return arguments[0].complete && "
                                         "arguments[0].naturalWidth", img) > 100
        # the <script> inside an answer is text on the page, not a script element
        assert driver.execute_script("return document.scripts.length") == 0
        assert '<script>alert("x")</script>' in driver.find_element(By.TAG_NAME, "body").text
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        network = [e for e in driver.get_log("browser") if "net::" in e.get("message", "")]
        assert network == []
    finally:
        driver.quit()


LAYOUT = """
const tables = Array.from(document.querySelectorAll('table'));
const verdict = document.getElementById('verdict');
const guide = document.getElementById('how-to-read');
const before = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
const edge = document.documentElement.clientWidth;  // the viewport less its scroll bar
const right = el => el.getBoundingClientRect().right;
return {
  inner: window.innerWidth, scroll: document.documentElement.scrollWidth,
  firstH2: document.querySelector('h2').id,
  afterTitle: document.querySelector('h1').nextElementSibling.id,
  verdictFirst: tables.every(t => before(verdict, t)),
  guideLast: tables.every(t => before(t, guide)),
  overflowing: tables.filter(t => right(t) > edge
                                  || t.parentElement.scrollWidth > t.parentElement.clientWidth)
                     .map(t => t.className + ' ' + Math.round(right(t))),
  hidden: Array.from(document.querySelectorAll('th')).filter(th => right(th) > edge)
                .map(th => th.textContent),
  n: tables.length};
"""


@pytest.mark.slow
def test_report__opens_with_its_verdict_and_its_tables_fit_a_1366_px_screen(real_run, tmp_path):
    """At 1366 px (a common laptop screen), the widest report of the fixture runs (a real run
    with human-corrected columns beside the hand-built one): the verdict comes right after the
    title and before every table, 'How to read this report' after every table, and no table
    (nor any column header: MC2, KL) runs past the right edge or hides inside its scroller."""
    from selenium.webdriver.common.by import By

    html_path, _ = write_report([real_run, _evil_run(tmp_path)], tmp_path / "out",
                                n_examples=2, notes=["A note on `truthsteer quickstart`."])
    driver = headless_chromium(window_size="1366,900")
    try:
        driver.get(html_path.resolve().as_uri())
        layout = driver.execute_script(LAYOUT)
        assert layout["inner"] == 1366 and layout["n"] >= 8
        assert layout["firstH2"] == layout["afterTitle"] == "verdict"
        assert layout["verdictFirst"] and layout["guideLast"]
        assert layout["overflowing"] == [] and layout["hidden"] == []
        assert layout["scroll"] <= layout["inner"]  # no horizontal page scroll
        headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "table.headline th")]
        assert {"MC2", "KL", "% true×informative"} <= set(headers)
        verdicts = [p.text for p in driver.find_elements(By.CSS_SELECTOR, "p.verdict")]
        assert [v.split(":")[0] for v in verdicts] == ["Run 1, run", "Run 2, run (2)"]
        assert all("beat the baseline" in v and "vs the baseline's" in v for v in verdicts)
        guide = driver.execute_script(
            "return document.getElementById('how-to-read').parentElement.innerText"
            ".split('How to read this report').pop()")
        assert "A note on truthsteer quickstart." in guide and "MC1/MC2 are" in guide
        shot = tmp_path / "report-1366.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        driver.quit()
