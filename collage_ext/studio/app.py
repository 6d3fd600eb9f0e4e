"""The studio's web app (Starlette) and ``serve`` (uvicorn on 127.0.0.1).

Why Starlette + uvicorn: the smallest well-kept ASGI pair (Starlette is what FastAPI is built on),
no build step and no JavaScript toolchain; the page is plain HTML, CSS and one script shipped in
``studio/static``. Nothing is fetched from the network: no CDN, no fonts, no telemetry.

Security, by default:

* binds to 127.0.0.1 (``--host`` / ``--port`` choose others);
* every request's ``Host`` must name this server (defeats DNS rebinding), a request that carries an
  ``Origin`` must come from this server's own origin, a browser request marked cross-site
  (``Sec-Fetch-Site``) may only open the page itself (another site cannot embed the dataset's
  images), and writes must be JSON posted from the page (a cross-site form cannot send them);
* files are served by id from the dataset's own list, and only when their real path lies in the
  dataset's image folders (no ``..``, no symlink leading out); the page's own assets come from the
  package folder through Starlette's ``StaticFiles``;
* nothing from the dataset is executed: images are decoded with Pillow, captions are text.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import CollageConfigError, CollageError
from .files import RefusedError
from .model import Studio

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def allowed_hosts(host: str, port: int) -> set[str]:
    """``Host`` header values this server answers to.

    Examples:
        >>> sorted(allowed_hosts("127.0.0.1", 8765))
        ['127.0.0.1:8765', '[::1]:8765', 'localhost:8765']
    """
    names = {host} if host not in ("0.0.0.0", "::", "") else set()
    if _loopback(host) or not names:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {f"[{n}]:{port}" if ":" in n and not n.startswith("[") else f"{n}:{port}" for n in names}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(studio: Studio, hosts: set[str]) -> Any:
    """The Starlette app serving ``studio`` to requests whose Host is in ``hosts``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Receive, Scope, Send

    origins = {f"http://{h}" for h in hosts}

    class Guard:
        """Refuse foreign Host / Origin, and writes that are not JSON from the page (before any route runs)."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                problem = None
                if headers.get("host", "").lower() not in hosts:
                    problem = f"Host {headers.get('host')!r} is not this studio ({', '.join(sorted(hosts))})"
                elif "origin" in headers and headers["origin"].lower() not in origins:
                    problem = f"Origin {headers['origin']!r} is not this studio; open the studio's own page"
                elif (headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
                      and scope["path"] != "/"):
                    problem = "cross-site requests are refused (another site's page tried to use the studio)"
                elif scope["method"] not in ("GET", "HEAD"):
                    if not headers.get("content-type", "").startswith("application/json"):
                        problem = "writes must be JSON sent by the studio page"
                if problem:
                    logger.warning(f"studio: refused {scope['method']} {scope['path']}: {problem}")
                    await JSONResponse({"error": problem}, status_code=403)(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    def guarded(handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            try:
                body = await request.json() if request.method == "POST" else None
                if body is not None and not isinstance(body, dict):
                    raise RefusedError("the request body must be a JSON object")
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
        return studio.set_caption(body.get("id"), text)

    def tokens(request: Request, body: dict[str, Any]) -> Any:
        return studio.preview_tokens(body.get("id"), str(body.get("text", "")))

    def crop(request: Request, body: dict[str, Any]) -> Any:
        return studio.set_crop(body.get("id"), body.get("box"))

    def drop(request: Request, body: dict[str, Any]) -> Any:
        studio.drop(body.get("id"))
        return studio.state()

    def restore(request: Request, body: dict[str, Any]) -> Any:
        studio.restore(body.get("id"))
        return studio.state()

    def undo(request: Request, body: dict[str, Any]) -> Any:
        return {"undone": studio.undo(), **studio.state()}

    def seed(request: Request, body: dict[str, Any]) -> Any:
        value = body.get("seed")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise RefusedError(f"seed must be a whole number >= 0, got {value!r}")
        return studio.set_seed(value, write=bool(body.get("write")))

    def reload(request: Request, body: Any) -> Any:
        studio.reload()
        return studio.state()

    get = [("/api/state", state), ("/api/sources", sources), ("/api/check", check), ("/api/frames", frames),
           ("/api/frame-image", frame_image), ("/api/source-image", source_image)]
    post = [("/api/caption", caption), ("/api/tokens", tokens), ("/api/crop", crop), ("/api/drop", drop),
            ("/api/restore", restore), ("/api/undo", undo), ("/api/seed", seed), ("/api/reload", reload)]
    routes: list[Route | Mount] = [Route("/", index)]
    routes += [Route(path, guarded(h), methods=["GET"]) for path, h in get]
    routes += [Route(path, guarded(h), methods=["POST"]) for path, h in post]
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"))
    app = Starlette(routes=routes)
    app.add_middleware(Guard)
    return app


_NO_STORE = {"Cache-Control": "no-store"}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (``port`` 0 picks a free one), so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 8765, *, sockets: Sequence[socket.socket] = (),
          ready: Callable[[str], None] | None = None) -> Any:
    """Run the studio until interrupted; ``ready`` is called with the page's address once it listens."""
    import uvicorn

    sock = sockets[0] if sockets else bind(host, port)
    real_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    app = create_app(studio, allowed_hosts(host, real_port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if ready is not None:
        ready(f"http://{url_host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{real_port}/")
    server.run(sockets=[sock])
    return server
