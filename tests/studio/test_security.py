"""The studio refuses what it must: path traversal, foreign Host / Origin, symlinks out of the dataset.

Every test snapshots the files of the project folder and of a folder outside it, and checks that a
refused request wrote nothing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from collage_ext.studio.files import Folders, History, RefusedError, move_group

from .conftest import need_extra

need_extra()
import httpx

from .conftest import Dataset, Server


def snapshot(*roots: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symlink (target) under ``roots``."""
    out: dict[str, bytes | str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    out[str(path)] = "-> " + os.readlink(path)
                elif path.is_file():
                    out[str(path)] = path.read_bytes()
    return out


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the project that the studio must never serve or write."""
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "notes.txt").write_text("my private notes\n", encoding="utf-8")
    return folder


def raw_get(server: Server, target: str, host: str | None = None, *, token: bool = True) -> tuple[int, bytes]:
    """Send a request line exactly as given (no client-side ``..`` clean-up), return status and body."""
    hostname, port = server.url.removeprefix("http://").split(":")
    auth = f"Authorization: token {server.token}\r\n" if token else ""
    with socket.create_connection((hostname, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host or server.host}\r\n{auth}Connection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/source-image?id=../../../../etc/passwd",
    "/api/source-image?id=0/0/../../../private/notes.txt",
    "/api/frame-image?epoch=1&name=../../../../etc/passwd",
])
def test_path_traversal_is_refused(server: Server, dataset: Dataset, outside: Path, target: str) -> None:
    status, body = raw_get(server, target)
    assert status in (400, 403, 404)
    assert b"root:" not in body and b"private notes" not in body


def test_traversal_in_a_write_is_refused_and_writes_nothing(server: Server, dataset: Dataset, outside: Path) -> None:
    before = snapshot(dataset.root, outside)
    for image_id in ("0/0/../../../private/notes.png", "../private/notes.png", "/etc/passwd", 7, None):
        r = server.http.post(f"{server.url}/api/caption", json={"id": image_id, "text": "pwned"})
        assert r.status_code == 404, r.text
        r = server.http.post(f"{server.url}/api/crop", json={"id": image_id, "box": [0, 0, 10, 10]})
        assert r.status_code == 404
    assert snapshot(dataset.root, outside) == before


def test_foreign_origin_is_refused_and_writes_nothing(server: Server, dataset: Dataset, outside: Path) -> None:
    before = snapshot(dataset.root, outside)
    body = {"id": "0/0/mychar_01.png", "text": "written by another site"}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": server.url.replace("127.0.0.1", "127.0.0.1.evil.example")},
                    {"Origin": server.url, "Sec-Fetch-Site": "cross-site"}):
        r = server.http.post(f"{server.url}/api/caption", json=body, headers=headers)
        assert r.status_code == 403 and ("refused" in r.text or "not this studio" in r.text), r.text
    # A cross-site form post cannot send JSON: a text/plain body is refused as well.
    r = server.http.post(f"{server.url}/api/caption", content=b'{"id": "0/0/mychar_01.png", "text": "x"}',
                   headers={"Content-Type": "text/plain"})
    assert r.status_code == 403
    assert snapshot(dataset.root, outside) == before
    # The page's own origin is accepted.
    ok = server.http.post(f"{server.url}/api/tokens", json={"id": "0/0/mychar_01.png", "text": "a, b"},
                    headers={"Origin": server.url})
    assert ok.status_code == 200 and ok.json()["total"] > 0


def test_another_site_cannot_embed_the_datasets_images(server: Server) -> None:
    """An <img> on another site sends no Origin but Sec-Fetch-Site: cross-site; only the page itself may open."""
    r = server.http.get(f"{server.url}/api/source-image", params={"id": "0/0/mychar_01.png"},
                  headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    same = server.http.get(f"{server.url}/api/source-image", params={"id": "0/0/mychar_01.png"},
                     headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.headers["content-type"] == "image/jpeg"
    assert server.http.get(f"{server.url}/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_foreign_host_is_refused(server: Server) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    port = server.host.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{int(port) + 1}"):
        status, body = raw_get(server, "/api/sources", host=host)
        assert status == 403 and b"not this studio" in body
    assert raw_get(server, "/api/state", host=f"localhost:{port}")[0] == 200


def test_a_symlinked_image_leading_out_is_not_served(server: Server, dataset: Dataset, outside: Path) -> None:
    secret = outside / "secret.png"
    (dataset.images / "mychar_00.png").rename(secret)
    (dataset.images / "mychar_00.png").symlink_to(secret)
    server.http.post(f"{server.url}/api/reload", json={})
    before = snapshot(dataset.root, outside)
    r = server.http.get(f"{server.url}/api/source-image", params={"id": "0/0/mychar_00.png"})
    assert r.status_code == 403 and "not inside the dataset" in r.json()["error"]
    listed = next(s for s in server.http.get(f"{server.url}/api/sources").json()["sources"] if s["name"] == "mychar_00.png")
    assert "symlink" in listed["problem"]
    assert snapshot(dataset.root, outside) == before


def test_a_symlinked_caption_leading_out_is_not_written(server: Server, dataset: Dataset, outside: Path) -> None:
    caption = dataset.images / "mychar_01.txt"
    caption.unlink()
    caption.symlink_to(outside / "notes.txt")
    server.http.post(f"{server.url}/api/reload", json={})
    before = snapshot(dataset.root, outside)
    r = server.http.post(f"{server.url}/api/caption", json={"id": "0/0/mychar_01.png", "text": "overwrite the notes"})
    assert r.status_code == 403 and "symlink" in r.json()["error"]
    assert snapshot(dataset.root, outside) == before
    assert (outside / "notes.txt").read_text(encoding="utf-8") == "my private notes\n"


def test_a_studio_folder_symlinked_out_is_not_used(server: Server, dataset: Dataset, outside: Path) -> None:
    (dataset.images / "_collage_studio").symlink_to(outside, target_is_directory=True)
    before = snapshot(dataset.root, outside)
    r = server.http.post(f"{server.url}/api/drop", json={"id": "0/0/mychar_02.png"})
    assert r.status_code == 403
    r = server.http.post(f"{server.url}/api/caption", json={"id": "0/0/mychar_02.png", "text": "mychar, new"})
    assert r.status_code == 403  # the previous version could not be kept inside the dataset
    assert snapshot(dataset.root, outside) == before


def test_folders_refuse_paths_outside(tmp_path: Path) -> None:
    images = tmp_path / "train" / "10_a"
    images.mkdir(parents=True)
    (tmp_path / "x.txt").write_text("x", encoding="utf-8")
    folders = Folders([images])
    assert folders.writable(images / "a.txt") == images / "a.txt"
    for bad in (images / ".." / "x.txt", tmp_path / "x.txt", images / "sub" / "a.txt", Path("/etc/passwd")):
        with pytest.raises(RefusedError):
            folders.writable(bad)
    with pytest.raises(RefusedError):
        folders.readable(images / ".." / "x.txt")
    history = History(folders)
    with pytest.raises(RefusedError):
        history.write(images / ".." / "x.txt", b"y", "test")
    with pytest.raises(RefusedError):
        move_group([tmp_path / "x.txt"], images, folders)
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "x"
