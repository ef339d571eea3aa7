"""`netstack report` in a real headless browser: Debian's chromium driven by Selenium and chromium-driver
(both installed by scripts/setup.sh).  The page is loaded from a file with no network."""
import io
import json
import re
import subprocess
import sys

import pytest

from netstack import scenarios

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    o = scenarios.run("smtp-dialogue")
    (d / "smtp.pcap").write_bytes(o.testbed.pcap_bytes())
    (d / "smtp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in o.testbed.transitions))
    out = d / "report.html"
    r = subprocess.run([sys.executable, "-m", "netstack", "report", str(d / "smtp.pcap"), "--state-log",
                        str(d / "smtp.jsonl"), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--no-proxy-server"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_is_self_contained(report):
    html = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)     # nothing fetched from anywhere
    assert "<script src" not in html and "<link " not in html


def test_report_in_headless_chromium(report, browser):
    from selenium.webdriver.common.by import By
    browser.get(report.as_uri())
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    body = browser.find_element(By.TAG_NAME, "body").text
    for label in ("SYN", "SYN-ACK", "EHLO client.example.org", "250 2.1.0 Ok", "Connections", "Ladder",
                  "TCP states of 198.18.0.2:25"):
        assert label in body, label
    ladder_texts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.ladder text")]
    assert any('"EHLO client.example.org"' in t for t in ladder_texts)
    assert browser.find_elements(By.CSS_SELECTOR, "img.graphs")[0].get_attribute("naturalWidth") != "0"

    # click the EHLO packet in the table: its trace -V reading appears
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr.pkt") if "length 25" in r.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    row.find_element(By.TAG_NAME, "td").click()                          # a real click on its number
    explain = browser.find_element(By.ID, "explain").text
    assert "EHLO client.example.org" in explain
    assert "destination port 25 (smtp)" in explain and "TSval" in explain
    assert "selected" in row.get_attribute("class")

    # click an arrow on the ladder: the same packet panel follows
    arrow = browser.find_elements(By.CSS_SELECTOR, "g.seg")[1]          # the SYN-ACK
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", arrow)
    assert "(SYN-ACK)" in browser.find_element(By.ID, "explain-title").text

    # the screenshot is not blank
    import matplotlib.image as mpimg
    png = browser.get_screenshot_as_png()
    img = mpimg.imread(io.BytesIO(png), format="png")
    flat = img.reshape(-1, img.shape[-1])[:, :3]
    assert flat.std() > 0.05
    colours = {tuple(px) for px in (flat[::97] * 255).astype(int).tolist()}
    assert len(colours) > 20


def test_bench_pictures_times_the_page_in_chromium(tmp_path):
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "netstack", "bench", "pictures", "--packets", "200", "--repeat", "1",
                        "--browser", "--quiet", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["rows"][-1]["step"] == "page ready (chromium)" and doc["rows"][-1]["seconds"] > 0
    assert [t["name"] for t in doc["targets"]] == ["report of 10,000 packets", "page ready in the browser"]
