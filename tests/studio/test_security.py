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
import httpx  # noqa: E402 (after the skip gate above)

from .conftest import Dataset, Server  # noqa: E402


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
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host or server.host}\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/api/source-image?id=../../../../etc/passwd",
        "/api/source-image?id=0/0/../../../private/notes.txt",
        "/api/frame-image?epoch=1&name=../../../../etc/passwd",
    ],
)
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
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": server.url.replace("127.0.0.1", "127.0.0.1.evil.example")},
        {"Origin": server.url, "Sec-Fetch-Site": "cross-site"},
    ):
        r = server.http.post(f"{server.url}/api/caption", json=body, headers=headers)
        assert r.status_code == 403 and ("refused" in r.text or "not this studio" in r.text), r.text
    # A cross-site form post cannot send JSON: a text/plain body is refused as well.
    r = server.http.post(
        f"{server.url}/api/caption",
        content=b'{"id": "0/0/mychar_01.png", "text": "x"}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 403
    assert snapshot(dataset.root, outside) == before
    # The page's own origin is accepted.
    ok = server.http.post(
        f"{server.url}/api/tokens", json={"id": "0/0/mychar_01.png", "text": "a, b"}, headers={"Origin": server.url}
    )
    assert ok.status_code == 200 and ok.json()["total"] > 0


def test_another_site_cannot_embed_the_datasets_images(server: Server) -> None:
    """An <img> on another site sends no Origin but Sec-Fetch-Site: cross-site; only the page itself may open."""
    r = server.http.get(
        f"{server.url}/api/source-image", params={"id": "0/0/mychar_01.png"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403
    same = server.http.get(
        f"{server.url}/api/source-image", params={"id": "0/0/mychar_01.png"}, headers={"Sec-Fetch-Site": "same-origin"}
    )
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
    listed = next(
        s for s in server.http.get(f"{server.url}/api/sources").json()["sources"] if s["name"] == "mychar_00.png"
    )
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


# -- the session token (issue 20 item 10) ----------------------------------------------------------------------

#: Every route: the page, its static files, each API read (images included) and each write.
EVERY_GET = [
    "/",
    "/static/studio.js",
    "/static/studio.css",
    "/api/state",
    "/api/sources",
    "/api/check",
    "/api/frames?epoch=1",
    "/api/source-image?id=0/0/mychar_01.png",
    "/api/source-image?id=0/0/mychar_01.png&thumb=1",
]
EVERY_POST = [
    "/api/caption",
    "/api/tokens",
    "/api/crop",
    "/api/drop",
    "/api/restore",
    "/api/undo",
    "/api/seed",
    "/api/reload",
]
#: Bytes that only a served dataset, image or page would contain.
DATA_MARKERS = (b"mychar", b"\x89PNG", b"\xff\xd8\xff", b"use strict", b"studio.js", b"caption", b"seed")


def first_frame(server: Server) -> str:
    return server.http.get(f"{server.url}/api/frames", params={"epoch": 1}).json()["frames"][0]["name"]


def test_every_route_refuses_without_the_token(server: Server, dataset: Dataset, outside: Path) -> None:
    gets = EVERY_GET + [f"/api/frame-image?epoch=1&name={first_frame(server)}"]
    before = snapshot(dataset.root, outside)
    wrong = {"Authorization": "token " + "x" * 43}
    for creds in ({}, wrong, {"Cookie": f"collage_studio_{server.host.rsplit(':', 1)[1]}=guess"}):
        for path in gets:
            r = httpx.get(server.url + path, headers=creds)
            assert r.status_code == 403, (path, creds, r.status_code)
            assert "token" in r.text and not any(m in r.content for m in DATA_MARKERS), (path, r.content[:200])
        for path in EVERY_POST:
            r = httpx.post(
                server.url + path,
                json={"id": "0/0/mychar_01.png", "text": "pwned", "box": [0, 0, 9, 9], "seed": 1, "write": True},
                headers=creds,
            )
            assert r.status_code == 403 and not any(m in r.content for m in DATA_MARKERS), (path, r.text)
    assert snapshot(dataset.root, outside) == before
    # With the token every read answers.
    for path in gets:
        assert server.http.get(server.url + path).status_code == 200, path


def test_the_printed_address_gives_a_strict_httponly_cookie(server: Server) -> None:
    r = httpx.get(server.page_url)
    assert r.status_code == 200 and b"studio.js" in r.content
    cookie = r.headers["set-cookie"]
    name = f"collage_studio_{server.host.rsplit(':', 1)[1]}"
    assert cookie.startswith(f"{name}={server.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # The cookie alone opens everything; the token in the address of any other route does not.
    jar = {name: server.token}
    assert httpx.get(f"{server.url}/api/state", cookies=jar).status_code == 200
    assert httpx.get(f"{server.url}/api/state", params={"token": server.token}).status_code == 403
    assert httpx.get(f"{server.url}/?token=wrong").status_code == 403


def test_a_remote_host_needs_allow_remote(dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    from collage_ext.cli import main
    from collage_ext.studio.app import RemoteRefused, check_host

    for host in ("0.0.0.0", "::", "192.168.1.20"):
        with pytest.raises(RemoteRefused, match="--allow_remote"):
            check_host(host, allow_remote=False)
        check_host(host, allow_remote=True)
    for host in ("127.0.0.1", "::1", "localhost"):
        check_host(host, allow_remote=False)
    assert main(["studio", str(dataset.toml), "--host", "0.0.0.0", "--no_browser"]) == 2
    assert "--allow_remote" in capsys.readouterr().err


def asgi_get(app: object, path: str, host: str, client: str, headers: dict[str, str]) -> httpx.Response:
    """A request to the app as if it came from ``client`` (another machine), without a network."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 50000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            return await c.get(path, headers=headers)

    with ThreadPoolExecutor(1) as pool:  # its own event loop (the browser tests' Playwright may hold this thread's)
        return pool.submit(lambda: asyncio.run(go())).result()


def test_a_lan_client_claiming_a_loopback_host_is_refused(dataset: Dataset) -> None:
    """Bound to 0.0.0.0 (--allow_remote), a client on the LAN sending ``Host: 127.0.0.1`` gets nothing."""
    from collage_ext.studio.app import allowed_hosts, create_app, new_token
    from collage_ext.studio.model import Studio

    token = new_token()
    hosts = allowed_hosts("0.0.0.0", 8765)
    assert "127.0.0.1:8765" in hosts
    app = create_app(Studio(dataset.toml), hosts, token)
    auth = {"Authorization": f"token {token}"}
    for lan_host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765"):
        r = asgi_get(app, "/api/sources", lan_host, "192.168.1.20", auth)
        assert r.status_code == 403 and "loopback" in r.json()["error"] and b"mychar" not in r.content
        r = asgi_get(app, "/api/sources", lan_host, "192.168.1.20", {})
        assert r.status_code == 403 and b"mychar" not in r.content
    # The same request from this computer, and a LAN request without the token under another name, for contrast.
    assert asgi_get(app, "/api/sources", "127.0.0.1:8765", "127.0.0.1", auth).status_code == 200
    machine = next(h for h in hosts if h.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "[::1]"))
    assert asgi_get(app, "/api/sources", machine, "192.168.1.20", {}).status_code == 403
    assert asgi_get(app, "/api/sources", machine, "192.168.1.20", auth).status_code == 200


# -- headers, sizes, malformed bodies (items 12, 13) --------------------------------------------------------------


def test_every_response_forbids_framing(server: Server) -> None:
    """Clickjacking: neither the page nor any answer (refusals included) may be shown in another site's frame."""
    responses = [server.http.get(server.url + p) for p in EVERY_GET] + [
        httpx.get(server.url + "/api/state"),
        httpx.get(server.page_url),
    ]
    responses.append(server.http.post(f"{server.url}/api/caption", json={"id": "nope", "text": "x"}))
    for r in responses:
        assert r.headers.get("x-frame-options") == "DENY", r.url
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), r.url
        assert r.headers.get("x-content-type-options") == "nosniff"


def test_large_bodies_are_refused_before_they_are_read(server: Server, dataset: Dataset, outside: Path) -> None:
    before = snapshot(dataset.root, outside)
    huge = "mychar, " + "x" * (2 << 20)
    r = server.http.post(f"{server.url}/api/caption", json={"id": "0/0/mychar_01.png", "text": huge})
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks():  # no Content-Length: the limit still holds while reading
        body = ('{"id": "0/0/mychar_01.png", "text": "' + "y" * (3 << 20) + '"}').encode()
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = server.http.post(f"{server.url}/api/caption", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert snapshot(dataset.root, outside) == before
    ok = server.http.post(
        f"{server.url}/api/caption", json={"id": "0/0/mychar_01.png", "text": "mychar, " + "z" * 5000}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe{}",
    ],
)
def test_malformed_json_is_a_400(server: Server, dataset: Dataset, body: bytes) -> None:
    before = snapshot(dataset.root)
    r = server.http.post(f"{server.url}/api/caption", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert "JSON" in r.json()["error"]
    assert snapshot(dataset.root) == before


def test_deeply_nested_brackets_in_a_caption_are_not_a_500(server: Server) -> None:
    for text in (
        "(" * 100_000 + "mychar" + ")" * 100_000,
        "{" * 100_000 + "a|b" + "}" * 100_000,
        "[" * 100_000 + ", " + "]" * 100_000,
    ):
        r = server.http.post(f"{server.url}/api/tokens", json={"id": "0/0/mychar_01.png", "text": text})
        assert r.status_code in (200, 400), (r.status_code, r.text[:200])


# -- one symlink rule for reads and writes (item 11) ----------------------------------------------------------------

SECRET = "root-only secret: the password is hunter2"


def everything_served(server: Server, epochs: int = 3) -> str:
    """Every answer the page can get about the dataset (sources, frames and their captions, check), as text."""
    parts = [server.http.get(f"{server.url}/api/sources").text, server.http.get(f"{server.url}/api/check").text]
    parts += [server.http.get(f"{server.url}/api/frames", params={"epoch": e}).text for e in range(1, epochs + 1)]
    return "\n".join(parts)


def frame_sources(server: Server, epochs: int = 3) -> set[str]:
    names = set()
    for e in range(1, epochs + 1):
        for frame in server.http.get(f"{server.url}/api/frames", params={"epoch": e}).json()["frames"]:
            names |= {s["name"] for s in frame["sources"]}
    return names


def test_a_caption_symlinked_out_is_not_read(server: Server, dataset: Dataset, outside: Path) -> None:
    """A caption symlink planted in the dataset must not show the file it points to (sources, tokens, frames)."""
    secret = outside / "secret.txt"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    caption = dataset.images / "mychar_01.txt"
    caption.unlink()
    caption.symlink_to(secret)
    server.http.post(f"{server.url}/api/reload", json={})
    served = everything_served(server)
    assert "hunter2" not in served
    listed = next(
        s for s in server.http.get(f"{server.url}/api/sources").json()["sources"] if s["name"] == "mychar_01.png"
    )
    assert "symlink" in listed["problem"] and listed["caption_text"] is None and listed["caption"] == ""
    assert "mychar_01.png" not in frame_sources(server)


def test_an_image_or_crop_symlinked_out_builds_no_frame(server: Server, dataset: Dataset, outside: Path) -> None:
    """Frames are reads too: an image (or its crop box) that leads out of the dataset is in no frame."""
    moved = outside / "elsewhere.png"
    (dataset.images / "mychar_02.png").rename(moved)
    (dataset.images / "mychar_02.png").symlink_to(moved)
    (outside / "box.txt").write_text(SECRET + "\n", encoding="utf-8")
    (dataset.images / "mychar_03.crop").symlink_to(outside / "box.txt")
    server.http.post(f"{server.url}/api/reload", json={})
    used = frame_sources(server)
    assert used and "mychar_02.png" not in used and "mychar_03.png" not in used
    assert "hunter2" not in everything_served(server)
    for name in ("mychar_02.png", "mychar_03.png"):
        listed = next(s for s in server.http.get(f"{server.url}/api/sources").json()["sources"] if s["name"] == name)
        assert "symlink" in listed["problem"]


def test_a_symlink_inside_the_dataset_is_read_and_written_through(server: Server, dataset: Dataset) -> None:
    """The same rule the other way: a link that stays inside is the file it points to, for reads and writes."""
    caption = dataset.images / "mychar_04.txt"
    shared = dataset.images / "shared_caption.txt"
    caption.rename(shared)
    caption.symlink_to(shared.name)  # relative, inside the image folder
    server.http.post(f"{server.url}/api/reload", json={})
    listed = next(
        s for s in server.http.get(f"{server.url}/api/sources").json()["sources"] if s["name"] == "mychar_04.png"
    )
    assert listed["problem"] is None and "teal dress" in listed["caption_text"]
    assert "mychar_04.png" in frame_sources(server, epochs=6)
    r = server.http.post(f"{server.url}/api/caption", json={"id": "0/0/mychar_04.png", "text": "mychar, linked"})
    assert r.status_code == 200, r.text
    assert caption.is_symlink() and shared.read_text(encoding="utf-8") == "mychar, linked\n"


# -- another local user (issue 20 acceptance) -------------------------------------------------------------------------

#: Run as another uid with a Python that user may run: request each path, print status and body (hex) as JSON.
CLIENT = r"""
import json, sys, urllib.error, urllib.request
base, plan = sys.argv[1], json.loads(sys.argv[2])
token = sys.stdin.read().strip()
out = []
for method, path, headers in plan:
    headers = {k: v.replace("{token}", token) for k, v in headers.items()}
    body = b'{"id": "0/0/mychar_01.png", "text": "pwned", "seed": 1, "write": true}' if method == "POST" else None
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            out.append([path, r.status, r.read().hex()])
    except urllib.error.HTTPError as e:
        out.append([path, e.code, e.read().hex()])
try:
    open(sys.argv[3]).read()
    out.append(["direct read", 200, ""])
except OSError as e:
    out.append(["direct read", 403, type(e).__name__.encode().hex()])
print(json.dumps(out))
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another local user")
def test_another_local_user_gets_nothing_without_the_token(server: Server, dataset: Dataset, tmp_path: Path) -> None:
    """The issue's attack, as uid ``nobody``: the studio answers nothing without the token, and with it a caption
    symlink planted in the dataset still does not read a root-only file."""
    import json
    import subprocess

    from tests.common import python_for_another_user

    python = python_for_another_user("nobody")
    if python is None:
        pytest.skip("no Python interpreter that the user nobody may run")
    secret = tmp_path / "root-only.txt"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    caption = dataset.images / "mychar_01.txt"
    caption.unlink()
    caption.symlink_to(secret)
    server.http.post(f"{server.url}/api/reload", json={})
    before = snapshot(dataset.root)
    port = server.host.rsplit(":", 1)[1]

    def as_nobody(plan: list[tuple[str, str, dict[str, str]]], token: str = "") -> list[tuple[str, int, bytes]]:
        done = subprocess.run(
            [python, "-I", "-c", CLIENT, server.url, json.dumps(plan), str(secret)],
            input=token,
            capture_output=True,
            text=True,
            user="nobody",
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return [(p, status, bytes.fromhex(body)) for p, status, body in json.loads(done.stdout)]

    frame = first_frame(server)
    gets = EVERY_GET + [f"/api/frame-image?epoch=1&name={frame}"]
    plan = [
        ("GET", p, h)
        for p in gets
        for h in ({}, {"Host": f"localhost:{port}"}, {"Cookie": f"collage_studio_{port}=guess"})
    ]
    plan += [("POST", p, {}) for p in EVERY_POST]
    answers = as_nobody(plan)
    assert answers[-1][:2] == ("direct read", 403)  # the file is really root-only
    for path, status, body in answers[:-1]:
        assert status == 403, (path, status)
        assert not any(m in body for m in DATA_MARKERS) and b"hunter2" not in body, (path, body[:200])
    assert snapshot(dataset.root) == before
    # With the token: the studio answers, and still reads nothing outside the dataset.
    auth = {"Authorization": "token {token}"}
    reads = as_nobody(
        [
            ("GET", p, auth)
            for p in [
                "/api/sources",
                "/api/frames?epoch=1",
                "/api/frames?epoch=2",
                "/api/check",
                "/api/source-image?id=0/0/mychar_01.png",
            ]
        ],
        token=server.token,
    )
    assert [status for _, status, _ in reads[:4]] == [200, 200, 200, 200]
    assert all(b"hunter2" not in body for _, _, body in reads)


def test_a_seed_numpy_refuses_is_a_400_and_not_written(server: Server, dataset: Dataset) -> None:
    before = dataset.train.read_bytes()
    for seed in (2**70, 2**32, -1, True, "7"):
        r = server.http.post(f"{server.url}/api/seed", json={"seed": seed, "write": True})
        assert r.status_code == 400 and "0 to 4294967295" in r.json()["error"], r.text
    assert dataset.train.read_bytes() == before
    r = server.http.post(f"{server.url}/api/seed", json={"seed": 2**32 - 1, "write": True})
    assert r.status_code == 200 and r.json()["seed"] == 2**32 - 1


def test_the_cli_prints_an_address_with_the_token_and_answers_only_it(dataset: Dataset) -> None:
    """The real command, as a user starts it: the printed address opens the studio, the bare one does not, and
    the token is on no command line (``ps`` shows other users every process's arguments)."""
    import re
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "collage_ext", "studio", str(dataset.toml), "--port", "0", "--no_browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLLAGE_EXT_NO_TOKENIZER": "1"},
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))", line)
            assert found, line
            url, port, token = found.group(1), found.group(2), found.group(3)
            assert len(token) >= 40
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(base + "/").status_code == 403
            assert httpx.get(base + "/api/sources").status_code == 403
            page = httpx.get(url)
            assert page.status_code == 200 and b"studio.js" in page.content
            assert httpx.get(base + "/api/sources", cookies=page.cookies).status_code == 200
            if os.path.exists(f"/proc/{proc.pid}/cmdline"):  # Linux: what ps shows every user
                with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline:
                    assert token.encode() not in cmdline.read()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
