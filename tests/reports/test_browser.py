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
