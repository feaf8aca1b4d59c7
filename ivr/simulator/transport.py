"""How the simulated network reaches the webhook app: in-process through Flask, or over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from flask import Flask


class TransportError(Exception):
    """The webhook could not be reached at all (refused, timed out, unknown host)."""


class Transport(Protocol):
    """Posts one form-encoded webhook request and returns the status and body."""

    def post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST `form` to the absolute `url`; return (status, body) whatever the status."""
        ...


class FlaskTransport:
    """Calls a Flask app in this process through its test client."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """Send the request to the app as if it came to `url` (same scheme, host, path and query)."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self.app.test_client() as client:
            response = client.post(
                path,
                base_url=f"{parts.scheme}://{parts.netloc}",
                data=urlencode(form).encode(),
                headers=headers,
            )
            return response.status_code, response.get_data(as_text=True)


class HttpTransport:
    """Calls the webhook over real HTTP, as Twilio does."""

    def __init__(self, timeout: float = 10, *, use_env_proxy: bool = False) -> None:
        self.timeout = timeout
        # Twilio reaches the public URL directly; a developer's proxy settings must not reroute it.
        handlers = [] if use_env_proxy else [urllib.request.ProxyHandler({})]
        self._opener = urllib.request.build_opener(*handlers)

    def post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        """POST the form; 4xx and 5xx come back as a status, only an unreachable host raises."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise TransportError(f"not an http(s) URL: {url}")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, data=urlencode(form).encode(), headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, _decode(response.read(), response.headers.get_content_charset())
        except urllib.error.HTTPError as error:
            try:
                return error.code, _decode(error.read(), error.headers.get_content_charset())
            finally:
                error.close()
        except (urllib.error.URLError, OSError) as error:
            # Most often the webhook app is not running beside the scheduler: say how to start it.
            hint = " (is the webhook app running? start it with `returnvisit serve`)"
            raise TransportError(f"cannot reach {url}: {error}{hint}") from error


def _decode(body: bytes, charset: str | None) -> str:
    return body.decode(charset or "utf-8", errors="replace")
