"""The studio's web app (Starlette) and ``serve`` (uvicorn on 127.0.0.1).

Why Starlette + uvicorn: the smallest well-kept ASGI pair (Starlette is what FastAPI is built on),
no build step and no JavaScript toolchain; the page is plain HTML, CSS and one script shipped in
``studio/static``. Nothing is fetched from the network: no CDN, no fonts, no telemetry.

Security, by default:

* a per-session secret, as Jupyter does: ``serve`` makes a random token and prints the page's address
  with it (``/?token=…``); the page exchanges it for an ``HttpOnly``, ``SameSite=Strict`` cookie, and
  every request (page, API, images, static files) without the cookie (or an ``Authorization: token …``
  header) gets a 403 and nothing else. Another local user can connect to 127.0.0.1, but not read the
  token: it is only printed, and handed to the browser through a private file (``open_in_browser``);
* binds to 127.0.0.1 (``--port`` chooses the port); another address only with ``--allow_remote``
  (``RemoteRefused`` otherwise), and the token is required either way;
* every request's ``Host`` must name this server (defeats DNS rebinding), a client on another machine
  may not claim a loopback ``Host``, a request that carries an
  ``Origin`` must come from this server's own origin, a browser request marked cross-site
  (``Sec-Fetch-Site``) may only open the page itself (another site cannot embed the dataset's
  images), and writes must be JSON posted from the page (a cross-site form cannot send them);
* files are served by id from the dataset's own list, and only when their real path lies in the
  dataset's image folders (no ``..``, no symlink leading out); the page's own assets come from the
  package folder through Starlette's ``StaticFiles``;
* every response forbids framing (``frame-ancestors 'none'``, ``X-Frame-Options: DENY``: no clickjacking);
* a request body is at most ``MAX_BODY`` bytes (413), a body that is not a JSON object is a 400;
* nothing from the dataset is executed: images are decoded with Pillow, captions are text.
"""

from __future__ import annotations

import atexit
import hmac
import html
import ipaddress
import json
import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collage_ext.core.errors import CollageConfigError, CollageError
from collage_ext.studio.files import RefusedError
from collage_ext.studio.model import Studio

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")

#: Largest request body accepted (a caption, a crop box): sd-scripts captions are a few KB.
MAX_BODY = 1 << 20

#: Sent with every response: no framing by any site (clickjacking), no plugins, base or form targets, no
#: sniffing, no Referer (the first address carries the token), images for this origin only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: Loopback names a ``Host`` header may use.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class RemoteRefused(CollageConfigError):
    """``--host`` names an address other computers can reach, without ``--allow_remote``."""


def new_token() -> str:
    """A fresh per-session secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    """The session cookie's name; cookies ignore ports, so two studios on one computer need two names."""
    return f"collage_studio_{port}"


def allowed_hosts(host: str, port: int) -> set[str]:
    """``Host`` header values this server answers to.

    Examples:
        >>> sorted(allowed_hosts("127.0.0.1", 8765))
        ['127.0.0.1:8765', '[::1]:8765', 'localhost:8765']
    """
    names = {host} if host not in ("0.0.0.0", "::", "") else set()
    if _loopback(host) or not names:
        names |= set(LOOPBACK_NAMES)
    if not names - set(LOOPBACK_NAMES) and not _loopback(host):
        names |= _machine_names()  # a wildcard bind: this computer's own names and addresses
    return {f"[{n}]:{port}" if ":" in n and not n.startswith("[") else f"{n}:{port}" for n in names}


def _machine_names() -> set[str]:
    """This computer's host name, its full name and the addresses they resolve to (for a wildcard ``--host``)."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass
    return {n.lower() for n in names if n}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(studio: Studio, hosts: set[str], token: str) -> Any:
    """The Starlette app serving ``studio`` to requests whose Host is in ``hosts`` and that carry ``token``.

    ``token`` arrives as ``/?token=…`` on the page's first load (answered with the session cookie), then
    as that cookie, or as an ``Authorization: token …`` header (scripts, tests).
    """
    if len(token) < 16:
        raise ValueError("the studio's token must be a long random secret (new_token())")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Receive, Scope, Send

    origins = {f"http://{h}" for h in hosts}
    port = int(next(iter(hosts)).rsplit(":", 1)[1])
    cookie = cookie_name(port)
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    def authorised(scope: Scope, headers: dict[str, str]) -> tuple[bool, bool]:
        """(the request carries the token, it carries it in the page's address: set the cookie)."""
        from http.cookies import CookieError, SimpleCookie
        from urllib.parse import parse_qs

        offered: list[str] = []
        try:
            jar = SimpleCookie(headers.get("cookie", ""))
            if cookie in jar:
                offered.append(jar[cookie].value)
        except CookieError:
            pass
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer"):
            offered.append(value.strip())
        from_url = False
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
            from_url = bool(query)
            offered += query
        ok = any(hmac.compare_digest(o.encode(), token.encode()) for o in offered)
        return ok, ok and from_url

    class Guard:
        """Refuse foreign Host / Origin, requests without the token, writes that are not JSON from the page and
        bodies over ``MAX_BODY`` (before any route runs); add ``SECURITY_HEADERS`` to every response."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            set_cookie = False

            async def send_secured(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", [])) + extra
                    if set_cookie:
                        headers.append(
                            (b"set-cookie", f"{cookie}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1"))
                        )
                    message = {**message, "headers": headers}
                await send(message)

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "").lower()
            client = (scope.get("client") or ("", 0))[0]
            problem, status = None, 403
            ok, set_cookie = authorised(scope, headers)
            if host not in hosts:
                problem = f"Host {headers.get('host')!r} is not this studio ({', '.join(sorted(hosts))})"
            elif client and not _loopback(client) and host.rsplit(":", 1)[0] in LOOPBACK_NAMES:
                problem = f"a request from {client} cannot be for this computer's loopback address ({host})"
            elif not ok:
                problem = (
                    "this studio needs its access token: open the address `collage-ext studio` printed "
                    "(it ends in /?token=...)"
                )
                if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
                    logger.warning(f"studio: refused {scope['method']} / from {client or '?'}: no valid token")
                    page = html.escape(problem).replace("`", "")
                    await Response(
                        f"<!DOCTYPE html><title>collage studio</title><p>{page}</p>",
                        status_code=403,
                        media_type="text/html",
                    )(scope, receive, send_secured)
                    return
            elif "origin" in headers and headers["origin"].lower() not in origins:
                problem = f"Origin {headers['origin']!r} is not this studio; open the studio's own page"
            elif headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none") and scope["path"] != "/":
                problem = "cross-site requests are refused (another site's page tried to use the studio)"
            elif scope["method"] not in ("GET", "HEAD"):
                if not headers.get("content-type", "").startswith("application/json"):
                    problem = "writes must be JSON sent by the studio page"
                else:
                    body, problem = await _read_body(receive, headers)
                    status = 413 if problem else status
                    receive = _replay(body)
            if problem:
                set_cookie = False  # a refused request starts no session, whatever it carried
                logger.warning(f"studio: refused {scope['method']} {scope['path']} from {client or '?'}: {problem}")
                await JSONResponse({"error": problem}, status_code=status)(scope, receive, send_secured)
                return
            await self.app(scope, receive, send_secured)

    def guarded(handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            try:
                body = _parse_json(await request.body()) if request.method == "POST" else None
                result = await run_in_threadpool(handler, request, body)
            except RefusedError as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except (CollageError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return run

    def epoch_of(request: Request) -> int:
        try:
            return int(request.query_params.get("epoch", "1"))
        except ValueError as exc:
            raise CollageConfigError("epoch must be a whole number, e.g. ?epoch=2") from exc

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_NO_STORE)

    def state(request: Request, body: Any) -> Any:
        return studio.state()

    def sources(request: Request, body: Any) -> Any:
        return studio.sources(epoch_of(request))

    def check(request: Request, body: Any) -> Any:
        return studio.check(epoch_of(request))

    def frames(request: Request, body: Any) -> Any:
        return studio.frames(epoch_of(request))

    def frame_image(request: Request, body: Any) -> Response:
        name = request.query_params.get("name", "")
        thumb = request.query_params.get("thumb") == "1"
        data = studio.frame_image(epoch_of(request), name, thumb=thumb)
        return Response(data, media_type="image/jpeg" if thumb else "image/png", headers=_NO_STORE)

    def source_image(request: Request, body: Any) -> Response:
        data = studio.source_image(request.query_params.get("id"), thumb=request.query_params.get("thumb") == "1")
        return Response(data, media_type="image/jpeg", headers=_NO_STORE)

    def caption(request: Request, body: dict[str, Any]) -> Any:
        text = body.get("text")
        if not isinstance(text, str):
            raise RefusedError("caption text must be a string")
        return studio.set_caption(body.get("id"), text, body.get("version"))

    def tokens(request: Request, body: dict[str, Any]) -> Any:
        return studio.preview_tokens(body.get("id"), str(body.get("text", "")))

    def crop(request: Request, body: dict[str, Any]) -> Any:
        return studio.set_crop(body.get("id"), body.get("box"), body.get("version"))

    def drop(request: Request, body: dict[str, Any]) -> Any:
        studio.drop(body.get("id"))
        return studio.state()

    def restore(request: Request, body: dict[str, Any]) -> Any:
        studio.restore(body.get("id"))
        return studio.state()

    def undo(request: Request, body: dict[str, Any]) -> Any:
        return {"undone": studio.undo(), **studio.state()}

    def seed(request: Request, body: dict[str, Any]) -> Any:
        return studio.set_seed(body.get("seed"), write=bool(body.get("write")))

    def reload(request: Request, body: Any) -> Any:
        studio.reload()
        return studio.state()

    get = [
        ("/api/state", state),
        ("/api/sources", sources),
        ("/api/check", check),
        ("/api/frames", frames),
        ("/api/frame-image", frame_image),
        ("/api/source-image", source_image),
    ]
    post = [
        ("/api/caption", caption),
        ("/api/tokens", tokens),
        ("/api/crop", crop),
        ("/api/drop", drop),
        ("/api/restore", restore),
        ("/api/undo", undo),
        ("/api/seed", seed),
        ("/api/reload", reload),
    ]
    routes: list[Route | Mount] = [Route("/", index)]
    routes += [Route(path, guarded(h), methods=["GET"]) for path, h in get]
    routes += [Route(path, guarded(h), methods=["POST"]) for path, h in post]
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"))
    app = Starlette(routes=routes)
    app.add_middleware(Guard)
    return app


_NO_STORE = {"Cache-Control": "no-store"}


async def _read_body(receive: Any, headers: dict[str, str]) -> tuple[bytes, str | None]:
    """The whole request body, or a problem when it is larger than ``MAX_BODY`` (read no further)."""
    too_big = (
        f"the request body is larger than {MAX_BODY // 1024} KiB; the studio's requests are small "
        "(a caption, a crop box)"
    )
    try:
        if int(headers.get("content-length") or 0) > MAX_BODY:
            return b"", too_big
    except ValueError:
        return b"", "the Content-Length header is not a number"
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return b"", too_big
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), None


def _replay(body: bytes) -> Any:
    """An ASGI ``receive`` that hands the app the body already read."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object.

    Raises:
        RefusedError: (400) not UTF-8 JSON, nested too deeply to parse, or not an object.
    """
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RefusedError(f"the request body is not valid JSON ({reason})", 400) from None
    if not isinstance(body, dict):
        raise RefusedError("the request body must be a JSON object", 400)
    return body


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0 picks a free one), so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse an address other computers can reach unless the user asked for it.

    Raises:
        RemoteRefused: ``host`` is not a loopback address and ``allow_remote`` is false.
    """
    if not _loopback(host) and not allow_remote:
        raise RemoteRefused(
            f"--host {host} lets other computers reach the studio, which edits your dataset's files; "
            "leave --host out (127.0.0.1: this computer only), or add --allow_remote if you mean it "
            "(the page still needs the token the studio prints)"
        )


def serve(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    sockets: Sequence[socket.socket] = (),
    ready: Callable[[str], None] | None = None,
    allow_remote: bool = False,
    token: str | None = None,
) -> Any:
    """Run the studio until interrupted; ``ready`` is called with the page's address (token included) once it listens.

    Raises:
        RemoteRefused: a non-loopback ``host`` without ``allow_remote``.
    """
    import uvicorn

    check_host(host, allow_remote)
    if not _loopback(host):
        logger.warning(f"studio: listening on {host}: other computers can reach it; they need the token")
    token = token or new_token()
    sock = sockets[0] if sockets else bind(host, port)
    real_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    app = create_app(studio, allowed_hosts(host, real_port), token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if ready is not None:
        ready(f"http://{url_host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{real_port}/?token={token}")
    server.run(sockets=[sock])
    return server


def open_in_browser(url: str) -> None:
    """Open ``url`` (which holds the token) without putting it on a command line other users can read.

    Like Jupyter: a browser started with the address as an argument shows it in ``ps`` to every local
    user; instead the browser opens a private file (mode 0600, removed at exit) that redirects to it.
    """
    import webbrowser

    fd, path = tempfile.mkstemp(prefix="collage-studio-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        target = html.escape(url, quote=True)
        out.write(
            f'<!DOCTYPE html><meta http-equiv="refresh" content="0;url={target}">'
            f'<title>collage studio</title><p><a href="{target}">open the collage studio</a></p>\n'
        )
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    webbrowser.open(Path(path).as_uri())
