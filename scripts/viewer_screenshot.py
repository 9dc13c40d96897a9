"""The README's viewer screenshot: one LoCoMo dev conversation through the public API, offline,
drawn by `persona view`, photographed by headless Chromium.

    python scripts/viewer_screenshot.py ../shared/locomo/dev/26.json --out docs/viewer.png

Only the PNG is kept: the page holds the conversation's text (LoCoMo is CC BY-NC 4.0 and never
copied into the repository), so it is written to a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _server import ServerProcess  # noqa: E402
from locomo import load_conversation  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from persona import AsyncPersonaClient, Item  # noqa: E402
from tests.graph.browser import chromium  # noqa: E402


async def ingest(target: str, path: Path) -> str:
    conv = load_conversation(path)
    async with AsyncPersonaClient(target, default_timeout_s=120.0) as client:
        for start in range(0, len(conv.turns), 100):
            batch = conv.turns[start : start + 100]
            await client.ingest(
                conv.user_id,
                [
                    Item(
                        t.ingest_text,
                        source_id=t.dia_id,
                        occurred_at=t.occurred_at,
                        source_type="chat_message",
                        speaker=t.speaker,
                    )
                    for t in batch
                ],
            )
    return conv.user_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conversation", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "viewer.png")
    parser.add_argument("--select", default="", help="search for this and show its details")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="persona-shot-") as tmp, ServerProcess() as server:
        user = asyncio.run(ingest(server.target, args.conversation))
        page = Path(tmp) / "view.html"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "persona_server.cli.main",
                "view",
                "--user",
                user,
                "--out",
                str(page),
                "--target",
                server.target,
            ],
            check=True,
        )
        with chromium(Path(tmp) / "profile") as browser:
            browser.set_window_size(1600, 960)
            browser.get(page.as_uri())
            WebDriverWait(browser, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
            )
            if args.select:
                browser.execute_script(
                    "const v = window.personaViewer; const found = v.search(arguments[0]);"
                    "if (found.length) v.select(found[0]);",
                    args.select,
                )
            time.sleep(1.0)  # the centring animation
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
