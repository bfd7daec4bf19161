"""One authenticated line to a Label Studio server, with retries and one-line errors.

The calls go to Label Studio's documented REST API through httpx rather than through
label-studio-sdk's generated client, because that client neither retries on connection errors
nor tells a wrong token from a missing project in a way a command line can report in one line;
the SDK is still what validates annotations (`LabelInterface`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from imagepref.errors import ImagePrefError
from imagepref.labeling.server import DEFAULT_STATE_DIR, StatePaths, read_secrets

DEFAULT_TOKEN_ENV = "LABEL_STUDIO_API_KEY"
_RETRYABLE_STATUS = {502, 503, 504}


class LabelStudioUnavailableError(ImagePrefError):
    """The server did not answer, even after retrying with backoff."""


class LabelStudioAuthError(ImagePrefError):
    """The server refused the token."""


class LabelStudioRequestError(ImagePrefError):
    """The server answered with an error that retrying will not fix."""


def retry_delays() -> list[float]:
    """Seconds to wait before each retry of a failed call (exponential backoff)."""
    # IMAGEPREF_LS_RETRIES lets tests fail fast; the default waits 0.5 + 1 + 2 + 4 s in all.
    attempts = int(os.environ.get("IMAGEPREF_LS_RETRIES", "4"))
    return [0.5 * 2**index for index in range(attempts)]


@dataclass
class LabelStudioConnection:
    """A base URL and a token; `request` retries transient failures and maps errors to one line.

    `files_root` is the folder the server serves local files from, when it is known (a managed
    server's `--files-root`): pull looks there for the images of the pairs it writes."""

    url: str
    token: str = field(repr=False)
    timeout_s: float = 120.0
    files_root: Path | None = None
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.url, timeout=self.timeout_s, headers={"Authorization": f"Token {self.token}"}
            )
        return self._client

    def close(self) -> None:
        """Close the underlying HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def request(
        self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201, 204), retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send one request, retrying connection errors and 502/503/504 with exponential backoff.

        Raises `LabelStudioUnavailableError` when the server stays unreachable,
        `LabelStudioAuthError` on 401/403, and `LabelStudioRequestError` for other unexpected
        answers (the caller may list 404 in `expect` to handle it itself). Pass `retry=False`
        for a call that must not be repeated blindly (an import whose answer was lost).
        """
        last_problem = ""
        for delay in [*retry_delays(), None] if retry else [None]:
            try:
                answer = self.client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last_problem = type(error).__name__
            else:
                if answer.status_code in expect:
                    return answer
                if answer.status_code in (401, 403):
                    raise LabelStudioAuthError(
                        f"Label Studio at {self.url} refused the token ({answer.status_code}); "
                        f"set {DEFAULT_TOKEN_ENV} to a valid API token of that server"
                    )
                if answer.status_code not in _RETRYABLE_STATUS:
                    raise LabelStudioRequestError(
                        f"Label Studio {method} {path} answered {answer.status_code}: {_short_detail(answer)}"
                    )
                last_problem = f"HTTP {answer.status_code}"
            if delay is None:
                break
            time.sleep(delay)
        raise LabelStudioUnavailableError(
            f"Label Studio at {self.url} is unreachable ({last_problem}) after retrying; "
            "start it with `imagepref label server start` or check --url"
        )

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request` and decode the JSON answer."""
        return self.request(method, path, **kwargs).json()

    def check(self) -> dict:
        """Who the token belongs to; fails with one line when the server or the token is wrong."""
        return self.json("GET", "/api/current-user/whoami")


def _short_detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.reason_phrase or "no detail"
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return str(detail).replace("\n", " ")[:300]
    return str(body)[:300]


def connect(
    url: str | None = None, token_env: str = DEFAULT_TOKEN_ENV, state_dir: Path = DEFAULT_STATE_DIR
) -> LabelStudioConnection:
    """A connection to an existing deployment (`url`, token from the `token_env` variable) or,
    without `url`, to the managed server of `state_dir` with the token from its secrets file."""
    if url:
        token = os.environ.get(token_env, "")
        if not token:
            raise LabelStudioAuthError(f"no API token for {url}: set the {token_env} environment variable")
        return LabelStudioConnection(url.rstrip("/"), token)
    paths = StatePaths(state_dir.resolve())
    if not paths.server_file.is_file():
        raise LabelStudioUnavailableError(
            f"no managed Label Studio runs from {paths.root}; run `imagepref label server start` or pass --url"
        )
    record = json.loads(paths.server_file.read_text(encoding="utf-8"))
    files_root = Path(record["files_root"]) if record.get("files_root") else None
    return LabelStudioConnection(record["url"], read_secrets(state_dir)["api_token"], files_root=files_root)


def managed_files_root(state_dir: Path = DEFAULT_STATE_DIR) -> Path | None:
    """The folder a managed server serves images from, or None when no managed server runs."""
    server_file = StatePaths(state_dir.resolve()).server_file
    if not server_file.is_file():
        return None
    root = json.loads(server_file.read_text(encoding="utf-8")).get("files_root")
    return Path(root) if root else None
