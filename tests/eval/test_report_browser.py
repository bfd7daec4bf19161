"""The evaluation report in a real browser: it opens from disk and nothing fails to load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_report_opens_from_disk_with_every_image_loaded(micro_run, prompts_file, tmp_path):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "eval"
    command = [
        str(Path(sys.executable).parent / "imagepref"),
        "eval",
        "--quiet",
        "--workers",
        "1",
        "--checkpoints",
        *map(str, micro_run),
        "--prompts",
        str(prompts_file),
        "--limit",
        "3",
        "--samples",
        "2",
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    results = json.loads((out / "results.json").read_text())

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url[:80]}"))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url[:40]))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        rows = page.locator("#figures tr[data-figure]").count()
        grid_rows = page.locator("#grid tr").count() - 1
        best_cells = page.locator("#figures td.best").count()
        readings = page.locator("#grid .reading").count()
        target_rows = page.locator("#targets tr[data-target]").count()
        browser.close()

    assert problems == []
    # Only the page itself and data: URIs: nothing outside the file.
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert len(images) == 3 * 2 * 2 + 2  # grid images plus the two plots (per checkpoint, along steps)
    assert all(complete and width > 0 for complete, width in images), images
    assert rows == len(results["checkpoints"][0]["summary"])
    assert grid_rows == 3 and readings == 3 * 2 * 2
    assert best_cells >= 1
    assert target_rows == len({" | ".join(p["targets"]) for p in results["prompts"] if p["targets"]}) >= 1
