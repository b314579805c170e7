"""A stand-in for the Hugging Face hub, for tests (huggingface_hub honours HF_ENDPOINT).

It answers the calls the runtime's fetch makes (model info with file sizes, HEAD and ranged
GET of /org/repo/resolve/<revision>/<file>) for repos made of local folders, with the hub's
error codes (X-Error-Code) so that huggingface_hub raises its real exceptions. A gated repo
needs `Authorization: Bearer <token>`. It counts the bytes it serves, per file, can send them
slowly (`rate`) and can answer every request with an error (`broken`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    folder: Path
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)  # branches and tags; the commit is always accepted

    @property
    def commit(self) -> str:
        return hashlib.sha1(str(self.folder).encode()).hexdigest()

    def files(self) -> dict[str, Path]:
        return {
            p.relative_to(self.folder).as_posix(): p
            for p in sorted(self.folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }


@dataclass
class Hub:
    repos: dict[str, Repo]
    token: str
    served: Counter[str] = field(default_factory=Counter)  # bytes, by "org/repo/file"
    requests: list[str] = field(default_factory=list)
    url: str = ""
    rate: int | None = None  # bytes a second per download (a slow link), None: unlimited
    broken: int | None = None  # a status every request gets (a hub in trouble), None: none

    def bytes_served(self, repo_id: str | None = None) -> int:
        return sum(
            n for key, n in self.served.items() if repo_id is None or key.startswith(repo_id)
        )


_INFO = re.compile(r"^/api/models/([^/]+/[^/@]+)(?:/revision/([^/]+))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:  # quiet
            return

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _refuse(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _repo(self, repo_id: str, revision: str | None) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._refuse(404, "RepoNotFound")
                return None
            if repo.gated and self.headers.get("Authorization") != f"Bearer {hub.token}":
                self._refuse(401, "GatedRepo")
                return None
            if revision not in (None, repo.commit, *repo.revisions):
                self._refuse(404, "RevisionNotFound")
                return None
            return repo

        def _answer(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if hub.broken:
                self._refuse(hub.broken, "Broken")
                return
            if match := _INFO.match(path):
                repo = self._repo(match.group(1), match.group(2))
                if repo is not None:
                    self._json(
                        {
                            "id": match.group(1),
                            "sha": repo.commit,
                            "private": False,
                            "gated": "manual" if repo.gated else False,
                            "siblings": [
                                {"rfilename": name, "size": p.stat().st_size}
                                for name, p in repo.files().items()
                            ],
                        }
                    )
                return
            if match := _RESOLVE.match(path):
                repo = self._repo(match.group(1), match.group(2))
                if repo is None:
                    return
                file = repo.files().get(match.group(3))
                if file is None:
                    self._refuse(404, "EntryNotFound")
                    return
                self._file(f"{match.group(1)}/{match.group(3)}", file, repo, body=body)
                return
            self._refuse(404, "RepoNotFound")

        def _json(self, data: object) -> None:
            raw = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _file(self, key: str, file: Path, repo: Repo, *, body: bool) -> None:
            data = file.read_bytes()
            start = 0
            if body and (ranged := re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))):
                start = int(ranged.group(1))
            part = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(part) if body else len(data)))
            self.end_headers()
            if body:
                step = 64 * 1024
                for offset in range(0, len(part), step):
                    chunk = part[offset : offset + step]
                    # Counted before it is sent: a client can have read the last chunk (and
                    # a test checked the count) before this thread gets on.
                    hub.served[key] += len(chunk)
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        hub.served[key] -= len(chunk)
                        return  # the client is gone (a killed fetch)
                    if hub.rate:
                        time.sleep(len(chunk) / hub.rate)

    return Handler


@contextmanager
def serve(repos: dict[str, Repo], token: str, host: str = "127.0.0.1") -> Iterator[Hub]:
    """The hub on `host` (a free port) for the duration of the block."""
    hub = Hub(repos, token)
    server = ThreadingHTTPServer((host, 0), _handler(hub))
    hub.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
