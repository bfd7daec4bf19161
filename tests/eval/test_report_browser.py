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
        steps = page.locator("#figures th[data-checkpoint] .step").all_inner_texts()
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
    assert steps == ["step 0", "step 10"]  # trainer_state.json's global_step of each checkpoint


def test_quickstart_report_shows_boxes_flags_the_training_curve_and_pages(shipped_quickstart, tmp_path):
    """The report of a quickstart-shaped run (the shipped generator as base and as GRPO's merged
    generator after DPO's) on 12 held-out prompts x 3 images: each word OCR read boxed on its
    image, the rules' flags on the images, the monitoring's curve, one image per prompt with the
    rest a click away, and pages of 10 prompts."""
    from playwright.sync_api import sync_playwright

    out = tmp_path / "eval"
    checkpoints = [str(shipped_quickstart["base"]), str(shipped_quickstart["aligned"])]
    command = [str(Path(sys.executable).parent / "imagepref"), "eval", "--quiet", "--workers", "1"]
    command += ["--checkpoints", *checkpoints, "--prompts", "glyphworld-heldout", "--limit", "12", "--samples", "3"]
    subprocess.run([*command, "--out", str(out)], check=True, capture_output=True, timeout=600)
    results = json.loads((out / "results.json").read_text())
    images = [image for checkpoint in results["checkpoints"] for image in checkpoint["images"]]
    words = sum(len(image["ocr_words"]) for image in images)
    marks = sum(len(image["rule_findings"]["forbidden_boxes"]) for image in images)
    marked_images = sum(bool(image["rule_findings"]["forbidden_boxes"]) for image in images)
    wrong_colours = sum(image["rule_findings"]["wrong_colour"] for image in images)
    assert words >= 1 and len(images) == 2 * 12 * 3

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url[:80]}"))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url[:40]))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        loaded = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        steps = page.locator("#figures th[data-checkpoint] .step").all_inner_texts()
        kinds = page.locator("#figures tr[data-figure$='/word_accuracy']").evaluate_all(
            "rows => rows.map(r => r.dataset.figure)"
        )
        curves = page.locator("#training-curves img.training-curve")
        curve = (curves.count(), curves.first.get_attribute("data-checkpoint"), curves.first.bounding_box())
        caption = page.locator("#training-curves figcaption").first.inner_text()
        pages = page.locator("#grid details.page")
        page_state = [(d.get_attribute("open") is not None, d.locator("tr[data-prompt]").count()) for d in pages.all()]
        visible_shots = page.locator("#grid .shot img").evaluate_all(
            "els => els.filter(e => e.checkVisibility()).length"
        )
        boxes = page.locator("#grid rect.box").count()
        counts = {
            "marks": page.locator("#grid rect.mark").count(),
            "forbidden": page.locator("#grid .flag.forbidden").count(),
            "colour": page.locator("#grid .flag.colour").count(),
        }
        # A box sits over its word: the first visible one lies inside its image, scaled with it.
        shot = page.locator("#grid details.page[open] .shot:has(rect.box)").first
        image_box, rect_box = shot.locator("img").bounding_box(), shot.locator("rect.box").first.bounding_box()
        x, y, width, height = (
            float(shot.locator("rect.box").first.get_attribute(a)) for a in ("x", "y", "width", "height")
        )
        natural = shot.locator("img").evaluate("e => e.naturalWidth")
        grid_width = page.locator("#grid table.grid").first.bounding_box()["width"]
        height_folded = page.evaluate("document.documentElement.scrollHeight")
        # The rest of a prompt's images, and the next page, are one click away.
        more = page.locator("#grid details.page[open] details.more").first
        more.locator("summary").click()
        more_shown = more.locator(".shot img").evaluate_all("els => els.filter(e => e.checkVisibility()).length")
        pages.nth(1).locator(":scope > summary").click()
        second_page_shown = pages.nth(1).locator("tr[data-prompt] .shot img").first.is_visible()
        browser.close()

    assert problems == [] and all(loaded), problems
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert steps == ["pretrain step 1200", "grpo step 120"]  # not "step 1" from aligned-round-1
    assert kinds == ["unseen_template/word_accuracy", "unseen_word/word_accuracy"]
    assert curve[0] == 1 and curve[1] == "aligned-round-1" and curve[2]["width"] > 600
    assert "dpo (30 steps) then grpo (120 steps)" in caption
    assert page_state == [(True, 10), (False, 2)]
    assert visible_shots == 10 * 2  # one image per prompt and checkpoint on the open page
    assert boxes == words and counts == {"marks": marks, "forbidden": marked_images, "colour": wrong_colours}
    scale = image_box["width"] / natural
    assert rect_box["x"] == pytest.approx(image_box["x"] + x * scale, abs=3)
    assert rect_box["y"] == pytest.approx(image_box["y"] + y * scale, abs=3)
    assert rect_box["width"] == pytest.approx(width * scale, abs=4) and rect_box["height"] == pytest.approx(
        height * scale, abs=4
    )
    assert grid_width > 0.9 * (1280 - 2 * 24 - 20)  # the page's width, less its margins and a scroll bar
    # Folded, 72 images of 12 prompts stay short: the page was 128 px an image plus its reading, per sample.
    assert height_folded < 9000
    assert more_shown == 2 and second_page_shown
