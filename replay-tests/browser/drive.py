"""Drives mf's viewer in headless Chromium (Selenium, the Debian chromium and chromedriver).

Usage:
  drive.py viewer URL OUTDIR   filters the list, opens exchanges, checks bodies and timelines
  drive.py control URL OUTDIR  switches the running replay to mode `error` (error rate 1)

Prints one JSON object of findings on stdout (the Rust test asserts on it) and saves
screenshots in OUTDIR. The browser reaches loopback only: every other host name resolves
to nothing, and no proxy is used.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def browser(outdir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={os.path.join(outdir, 'profile')}",
        "--window-size=1400,1000",
        "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--disable-extensions",
    ):
        opts.add_argument(arg)
    service = Service(executable_path="/usr/bin/chromedriver", log_output=os.devnull)
    return webdriver.Chrome(options=opts, service=service)


def rows(d):
    return d.find_elements(By.CSS_SELECTOR, "#exchanges tbody tr")


def viewer(d, url, outdir):
    wait = WebDriverWait(d, 15)
    found = {}
    d.get(url + "/")
    wait.until(EC.presence_of_element_located((By.ID, "exchanges")))
    found["all_rows"] = len(rows(d))
    d.save_screenshot(os.path.join(outdir, "viewer.png"))

    # Filter by protocol through the form, as a user would.
    d.find_element(By.CSS_SELECTOR, "select[name=protocol] option[value=websocket]").click()
    d.find_element(By.ID, "apply").click()
    wait.until(EC.url_contains("protocol=websocket"))
    ws_rows = rows(d)
    found["websocket_rows"] = len(ws_rows)
    found["websocket_protocols"] = sorted({r.get_attribute("data-protocol") for r in ws_rows})
    ws_rows[0].find_element(By.CSS_SELECTOR, "td a").click()
    wait.until(EC.presence_of_element_located((By.ID, "messages")))
    msgs = d.find_elements(By.CSS_SELECTOR, "#messages tr.msg")
    found["ws_messages"] = [
        {
            "direction": m.get_attribute("data-direction"),
            "offset_ms": float(m.get_attribute("data-offset-ms")),
            "content": m.find_element(By.CSS_SELECTOR, "td.content").text,
        }
        for m in msgs
    ]
    found["ws_timeline_dots"] = len(d.find_elements(By.CSS_SELECTOR, "svg.timeline-axis circle"))
    d.save_screenshot(os.path.join(outdir, "websocket.png"))

    d.get(url + "/?protocol=grpc")
    wait.until(EC.presence_of_element_located((By.ID, "exchanges")))
    found["grpc_rows"] = len(rows(d))
    rows(d)[0].find_element(By.CSS_SELECTOR, "td a").click()
    wait.until(EC.presence_of_element_located((By.ID, "messages")))
    found["grpc_messages"] = [
        [m.get_attribute("data-direction"), m.find_elements(By.TAG_NAME, "td")[2].text]
        for m in d.find_elements(By.CSS_SELECTOR, "#messages tr.msg")
    ]

    # The exchange whose recorded body is markup: shown as text, never run or parsed.
    d.get(url + "/?path=/echo&method=POST")
    wait.until(EC.presence_of_element_located((By.ID, "exchanges")))
    found["echo_rows"] = len(rows(d))
    for r in rows(d):
        r.find_element(By.CSS_SELECTOR, "td a").click()
        wait.until(EC.presence_of_element_located((By.ID, "detail")))
        req = d.find_element(By.CSS_SELECTOR, ".body-request")
        if req.find_elements(By.TAG_NAME, "img"):
            found["image_src_prefix"] = req.find_element(By.TAG_NAME, "img").get_attribute("src")[:22]
        else:
            found["markup_body_text"] = req.text
            found["markup_body_script_elements"] = len(req.find_elements(By.TAG_NAME, "script"))
            found["alerted"] = d.execute_script("return window.__mf_xss === true")
            found["curl"] = d.find_element(By.ID, "curl-command").text
            d.save_screenshot(os.path.join(outdir, "detail.png"))
        d.back()
        wait.until(EC.presence_of_element_located((By.ID, "exchanges")))

    # JSON bodies fold.
    d.get(url + "/?path=/json")
    rows(d)[0].find_element(By.CSS_SELECTOR, "td a").click()
    wait.until(EC.presence_of_element_located((By.ID, "detail")))
    found["json_folds"] = len(d.find_elements(By.CSS_SELECTOR, ".body-response details"))
    return found


def control(d, url, outdir):
    wait = WebDriverWait(d, 15)
    found = {}
    d.set_window_size(1400, 1300)
    d.get(url + "/control")
    # The live feed: at least two events (one a second) reach the page.
    wait.until(lambda d: int(d.find_element(By.ID, "control").get_attribute("data-live-events") or 0) >= 2)
    found["mode_before"] = d.find_element(By.ID, "control").get_attribute("data-mode")
    found["presets"] = [b.text for b in d.find_elements(By.CSS_SELECTOR, "#presets button")]
    rate = d.find_element(By.CSS_SELECTOR, "#mode-error input[data-field=error_rate]")
    rate.clear()
    rate.send_keys("1")
    d.find_element(By.ID, "apply-error").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "control-status"), "Mode is now error"))
    found["mode_after"] = d.find_element(By.ID, "control").get_attribute("data-mode")
    found["active_card"] = d.find_element(By.CSS_SELECTOR, ".card.active").get_attribute("data-mode")
    found["histogram_bars"] = len(d.find_elements(By.CSS_SELECTOR, "#latency-histogram rect.bucket"))
    d.save_screenshot(os.path.join(outdir, "control.png"))
    return found


def main():
    what, url, outdir = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    d = browser(outdir)
    try:
        found = {"viewer": viewer, "control": control}[what](d, url, outdir)
    finally:
        d.quit()
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
