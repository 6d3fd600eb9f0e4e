"""Fixtures for the studio: a user-like dataset, a running studio server, and headless chromium.

Tests that need the server skip when the ``studio`` extra (starlette, uvicorn; httpx for the client)
is not installed. The ``browser`` fixture (headless Debian chromium through Playwright) is in
``tests/conftest.py``, shared with the preview contact-sheet tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from collage_ext.studio.app import allowed_hosts, bind, create_app, new_token  # imports Starlette only when called
from collage_ext.studio.model import Studio

#: Why a test that needs the server is skipped.
NO_EXTRA = "the studio extra is not installed: pip install -e '.[studio]' (or '.[test]')"


def need_extra() -> None:
    """Skip the calling module or test unless the studio extra (and httpx for the HTTP tests) is installed."""
    for name in ("starlette", "uvicorn", "httpx"):
        pytest.importorskip(name, reason=NO_EXTRA)


#: Portraits the crop editor shows at exactly half size (560 px tall), so drags map to whole pixels.
PORTRAIT = (800, 1120)
DRESSES = {
    "red": (200, 40, 50),
    "green": (40, 150, 70),
    "purple": (130, 60, 170),
    "orange": (235, 130, 30),
    "teal": (30, 150, 150),
    "pink": (230, 120, 170),
}
BLUE, RED = (30, 60, 200), (210, 30, 40)


def draw_person(size: tuple[int, int], dress: tuple[int, int, int], background: tuple[int, int, int]) -> Image.Image:
    """A standing figure on a plain background, like a character LoRA's training photo."""
    w, h = size
    img = Image.new("RGB", size, background)
    d = ImageDraw.Draw(img)
    d.ellipse([w * 0.42, h * 0.04, w * 0.58, h * 0.16], fill=(240, 200, 170))
    d.polygon([(w / 2, h * 0.16), (w * 0.25, h * 0.82), (w * 0.75, h * 0.82)], fill=dress)
    d.rectangle([w * 0.42, h * 0.82, w * 0.47, h * 0.98], fill=(60, 40, 30))
    d.rectangle([w * 0.53, h * 0.82, w * 0.58, h * 0.98], fill=(60, 40, 30))
    return img


@dataclass
class Dataset:
    """A dataset folder as a user has it: train/10_mychar with PNGs and .txt captions, two TOMLs."""

    root: Path
    images: Path
    toml: Path
    train: Path


def make_dataset(root: Path) -> Dataset:
    """Six portraits and a small faint one; ``mychar_00.png`` is half blue, half red (the crop test cuts the blue
    away)."""
    images = root / "train" / "10_mychar"
    images.mkdir(parents=True)
    for i, (name, colour) in enumerate(DRESSES.items()):
        img = draw_person(PORTRAIT, colour, (170, 200, 230) if i % 2 else (225, 205, 160))
        if i == 0:
            img = Image.new("RGB", PORTRAIT, BLUE)
            img.paste(RED, (PORTRAIT[0] // 2, 0, PORTRAIT[0], PORTRAIT[1]))
        img.save(images / f"mychar_{i:02d}.png")
        (images / f"mychar_{i:02d}.txt").write_text(
            f"mychar, 1girl, {name} dress, full body, standing\n", encoding="utf-8"
        )
    faint = Image.new("RGB", (300, 420), (128, 128, 128))  # a small, washed-out photo: check flags it
    ImageDraw.Draw(faint).ellipse([90, 60, 210, 360], fill=(138, 134, 130))
    faint.save(images / "mychar_06.png")
    (images / "mychar_06.txt").write_text("mychar, 1girl, grey dress, blurry\n", encoding="utf-8")
    toml = root / "dataset.toml"
    toml.write_text(
        f"""\
[general]
caption_extension = ".txt"
keep_tokens = 1
collage_rate = 1.0
collage_caption_merge = "tags"
collage_repeat_phrases = ["mychar"]
# the crop test's 360x504 box keeps the full frame height only magnified 1.65x (content-shaped frame)
collage_max_upscale = 2.5

[[datasets]]
resolution = 1024
batch_size = 1
enable_bucket = true
max_bucket_reso = 2048

  [[datasets.subsets]]
  image_dir = "{images.as_posix()}"
  num_repeats = 1
""",
        encoding="utf-8",
    )
    train = root / "train.toml"
    train.write_text(
        "# my training run\n[training]\nseed = 42\nmax_train_epochs = 10\nmax_token_length = 225\n"
        'dataset_class = "collage_ext.CollageDataset"\n',
        encoding="utf-8",
    )
    return Dataset(root, images, toml, train)


@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """A fresh user-like dataset; token counts use the labelled estimate (no tokenizer lookup)."""
    monkeypatch.setenv("COLLAGE_EXT_NO_TOKENIZER", "1")
    return make_dataset(tmp_path / "project")


@dataclass
class Server:
    """A studio serving ``dataset`` on 127.0.0.1 in a background thread.

    ``http`` is an httpx client that sends the session's token (``Authorization: token …``); ``page_url``
    is the address the CLI prints (``/?token=…``).
    """

    studio: Studio
    url: str
    host: str
    token: str
    http: Any

    @property
    def page_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@pytest.fixture
def server(dataset: Dataset) -> Iterator[Server]:
    """Start the studio (uvicorn on a free loopback port) and stop it after the test."""
    need_extra()
    import httpx
    import uvicorn

    studio = Studio(dataset.toml, config=dataset.train)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    token = new_token()
    app = create_app(studio, allowed_hosts("127.0.0.1", port), token)
    ready = threading.Event()

    class Announcing(uvicorn.Server):
        """Sets ``ready`` when start-up is over, listening or not (``started`` tells which)."""

        async def startup(self, sockets: list[Any] | None = None) -> None:
            try:
                await super().startup(sockets=sockets)
            finally:
                ready.set()

    srv = Announcing(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))

    def serve() -> None:
        try:
            srv.run(sockets=[sock])
        finally:
            ready.set()  # a server that failed before start-up finished

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(timeout=60) or not srv.started:
        raise RuntimeError("the studio server did not start")
    with httpx.Client(headers={"Authorization": f"token {token}"}, timeout=120) as client:
        yield Server(studio, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", token, client)
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh page of the studio, loaded and settled (sources, frames and check findings shown)."""
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server.page_url)
    pg.wait_for_selector(".card[data-id]")
    pg.wait_for_function("document.body.dataset.checked !== undefined")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
