"""`persona view` pages in a real browser: headless Chromium renders the user's graph, search
finds a node, clicking a node (on the canvas, or a search result) shows its details, and a
5,000-node graph stays usable (the episode chain is paged). Screenshots go to the test's
temporary directory."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from persona_server.cli.main import main
from persona_server.domain.models import UserRef
from tests.graph.browser import chromium
from tests.graph.conftest import StartServer
from tests.graph.handmade import EXPECTED, write_handmade
from tests.transport.transport_settings import KEY_A

MEMORY_IDS = [r["id"] for r in EXPECTED if r["record"] == "node"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def open_page(browser: webdriver.Chrome, page: Path) -> None:
    browser.get(page.as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
    )


def js(browser: webdriver.Chrome, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def click_node(browser: webdriver.Chrome, node_id: str) -> str:
    """Bring a node into view, click where it is drawn, and return what the click hit.

    On a busy machine the page may still be settling when the position is read, so a click
    that reaches nothing is tried again (three times) from a fresh position."""
    for _ in range(3):
        js(
            browser,
            "const cy = window.personaViewer.cy; window.__tapped = null;"
            "if (!window.__listening) { window.__listening = true;"
            " cy.on('tap', e => {"
            "  window.__tapped = e.target === cy ? 'background' : e.target.id(); }); }"
            "cy.stop(true, true); cy.fit(cy.$id(arguments[0]), 200);",
            node_id,
        )
        WebDriverWait(browser, 10).until(
            lambda d: not js(d, "return window.personaViewer.cy.animated()")
        )
        pos = js(
            browser, "return window.personaViewer.cy.$id(arguments[0]).renderedPosition()", node_id
        )
        canvas = browser.find_element(By.ID, "graph")
        size = canvas.size
        ActionChains(browser).move_to_element_with_offset(
            canvas, int(pos["x"] - size["width"] / 2), int(pos["y"] - size["height"] / 2)
        ).click().perform()
        try:
            WebDriverWait(browser, 5).until(lambda d: js(d, "return window.__tapped") is not None)
        except TimeoutException:
            continue
        return str(js(browser, "return window.__tapped"))
    raise AssertionError(f"three clicks where {node_id} is drawn reached nothing")


def details_text(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "details").text)


def test_the_page_renders_the_graph_search_finds_and_a_click_shows_details(
    start_server: StartServer,
    browser: webdriver.Chrome,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server = start_server()
    user = UserRef(tenant="tenant-a", user_id="u1")
    server.run(write_handmade(server.app.store, user, server.app.embedder.dimension))
    page = tmp_path / "u1.html"
    code = main(
        ["view", "--user", "u1", "--out", str(page), "--target", server.target, "--api-key", KEY_A]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {page} (13 memories, 26 edges)" in out
    html = page.read_text(encoding="utf-8")
    assert "<script src" not in html and "<link" not in html  # everything inline
    assert "default-src 'none'" in html

    open_page(browser, page)
    drawn = js(browser, "return window.personaViewer.cy.nodes().map(n => n.id())")
    assert set(MEMORY_IDS) <= set(drawn)
    assert js(browser, "return window.personaViewer.cy.edges().length") == 26
    # Coloured by type, invalidated facts drawn as history, sized by mention count.
    assert (
        js(browser, "return window.personaViewer.cy.$id('en_sam').style('background-color')")
        == "rgb(245,158,11)"
    )
    assert js(browser, "return window.personaViewer.cy.$id('fa_lived_porto').hasClass('history')")
    assert js(
        browser,
        "const cy = window.personaViewer.cy;"
        "return cy.$id('ps_window').width() > cy.$id('en_lisbon').width()",
    )
    legend = browser.find_element(By.ID, "legend").text
    for line in (
        "Entities\n4",
        "Facts\n4",
        "Psyche\n1",
        "Goals\n1",
        "Episodes\n3",
        "Invalidated (history)\n1",
    ):
        assert line in legend, legend
    # The timeline: episodes on one row in chain order (the back-filled one first).
    xs = js(
        browser,
        "return ['ep_03','ep_01','ep_02'].map(id => window.personaViewer.cy.$id(id).position())",
    )
    assert xs[0]["x"] < xs[1]["x"] < xs[2]["x"] and xs[0]["y"] == xs[1]["y"] == xs[2]["y"]
    # No request left the page (everything it needs is inside it).
    assert js(browser, "return performance.getEntriesByType('resource').length") == 0
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    # Search: typing finds the node; choosing the result shows its details and provenance.
    box = browser.find_element(By.ID, "search")
    box.send_keys("lisbon")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "results").is_displayed())
    results = browser.find_elements(By.CSS_SELECTOR, "#results li")
    assert results[0].get_attribute("data-id") == "en_lisbon"
    assert {r.get_attribute("data-id") for r in results} >= {
        "en_lisbon",
        "fa_lives_lisbon",
        "ep_01",
    }
    ActionChains(browser).click(results[0]).perform()
    WebDriverWait(browser, 10).until(
        lambda d: "Lisbon" in details_text(d) and "place" in details_text(d)
    )
    text = details_text(browser)
    assert "provenance: episodes it came from (1)" in text.lower() and "m1" in text

    # A click on the canvas, where the node is drawn, shows that node.
    box.clear()
    js(browser, "document.activeElement.blur()")
    tapped = click_node(browser, "fa_sister")
    assert tapped == "fa_sister"
    WebDriverWait(browser, 10).until(lambda d: "Ana is Sam's sister" in details_text(d))
    text = details_text(browser)
    assert "sister_of" in text and "subject" in text and "event time" in text
    assert "2024-03-05 18:30:00 UTC" in text

    # An invalidated fact shows when it stopped holding, and its other versions.
    js(browser, "window.personaViewer.select('fa_lived_porto')")
    text = details_text(browser)
    assert "invalid since" in text and "2024-03-01 00:00:00 UTC" in text
    assert "other versions (history) (1)" in text.lower() and "Sam lives in Lisbon" in text

    shot = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def big_export(path: Path, episodes: int, entities: int) -> None:
    """A valid export file: a chain of episodes over a year, entities mentioned by them, and a
    fact between each pair of neighbouring entities."""

    def ts(minutes: int) -> str:
        day, rest = divmod(minutes, 24 * 60)
        return f"2024-{1 + day // 28:02d}-{1 + day % 28:02d}T{rest // 60:02d}:{rest % 60:02d}:00Z"

    lines = [{"record": "header", "format": "persona.graph", "version": 1, "user_id": "big"}]
    ep_ids = [f"ep_{i:05d}" for i in range(episodes)]
    for i, eid in enumerate(ep_ids):
        lines.append(
            {
                "record": "node",
                "id": eid,
                "type": "episode",
                "text": f"Day note number {i}",
                "occurred_at": ts(i * 80),
                "recorded_at": ts(i * 80),
                "mention_count": 1,
                "metadata": {},
                "episode": {
                    "source_id": f"src-{i}",
                    "source_type": "text",
                    "speaker": "",
                    "role": "unspecified",
                    "summary": "",
                    "extraction": {"state": "done", "attempts": 1},
                },
            }
        )
    en_ids = [f"en_{k:05d}" for k in range(entities)]
    for k, nid in enumerate(en_ids):
        lines.append(
            {
                "record": "node",
                "id": nid,
                "type": "entity",
                "text": f"Thing {k}",
                "recorded_at": ts(k),
                "mention_count": 1 + k % 9,
                "metadata": {},
                "entity": {"name": f"Thing {k}", "kind": "thing"},
            }
        )
    facts = []
    for k in range(entities - 1):
        fid = f"fa_{k:05d}"
        facts.append(fid)
        lines.append(
            {
                "record": "node",
                "id": fid,
                "type": "fact",
                "text": f"Thing {k} is near Thing {k + 1}",
                "recorded_at": ts(entities + k),
                "mention_count": 1,
                "metadata": {},
                "fact": {"subject_id": en_ids[k], "predicate": "near", "object_id": en_ids[k + 1]},
            }
        )
    lines += [
        {"record": "edge", "type": "NEXT", "from": a, "to": b}
        for a, b in itertools.pairwise(ep_ids)
    ]
    for i, eid in enumerate(ep_ids):
        lines.append(
            {"record": "edge", "type": "MENTIONS", "from": eid, "to": en_ids[i % entities]}
        )
    for k, nid in enumerate(en_ids):
        lines.append(
            {
                "record": "edge",
                "type": "DERIVED_FROM",
                "from": nid,
                "to": ep_ids[(k * 37) % episodes],
            }
        )
    for k, fid in enumerate(facts):
        lines.append(
            {
                "record": "edge",
                "type": "DERIVED_FROM",
                "from": fid,
                "to": ep_ids[(k * 53) % episodes],
            }
        )
        lines.append({"record": "edge", "type": "SUBJECT", "from": fid, "to": en_ids[k]})
        lines.append({"record": "edge", "type": "OBJECT", "from": fid, "to": en_ids[k + 1]})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")


def test_a_5000_node_graph_stays_usable(
    browser: webdriver.Chrome, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "big.jsonl"
    big_export(export, episodes=3_600, entities=700)  # 3,600 + 700 + 699 = 4,999 memories
    page = tmp_path / "big.html"
    assert main(["view", "--user", "big", "--file", str(export), "--out", str(page)]) == 0
    assert "(4999 memories" in capsys.readouterr().out

    open_page(browser, page)
    viewer = "window.personaViewer"
    # The chain is paged: one page of episodes is drawn one by one, the others as one node each.
    pages = js(browser, f"return {viewer}.pages")
    assert pages == 12
    drawn = js(browser, f"return {viewer}.cy.nodes('[type = \"episode\"]').length")
    assert drawn == 300
    assert js(browser, f"return {viewer}.cy.nodes('[type = \"page\"]').length") == 11
    assert (
        js(browser, f'return {viewer}.cy.nodes(\'[type = "entity"], [type = "fact"]\').length')
        == 1399
    )
    label = browser.find_element(By.ID, "page-label").text
    assert label.startswith("episodes 3,301\u20133,600 of 3,600")
    # Searching for an early episode's source id and choosing it opens its page.
    box = browser.find_element(By.ID, "search")
    box.send_keys("src-17 ")
    box.send_keys("\n")
    WebDriverWait(browser, 10).until(lambda d: "src-17" in details_text(d))
    assert browser.find_element(By.ID, "page-label").text.startswith("episodes 1\u2013300 of 3,600")
    assert js(browser, f"return {viewer}.cy.$id('ep_00017').length") == 1
    # The pager moves on.
    browser.find_element(By.ID, "next-page").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "page-label").text.startswith("episodes 301\u2013600")
    )
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert browser.save_screenshot(str(tmp_path / "big.png"))
