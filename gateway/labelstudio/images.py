"""A Label Studio task's image, fetched for the model: from Label Studio, a data URI, or a host
the operator allowed.

Label Studio puts a URL in the task's data (``{"image": "/data/upload/3/1a2b-photo.jpg"}``).
Relative URLs and URLs on ``LABELSTUDIO_URL``'s origin are fetched from Label Studio with its
token; ``data:`` URIs are decoded; other http(s) origins only when ``LABELSTUDIO_IMAGE_ORIGINS``
lists them, without credentials: the predict route is open like ``/predict``, and fetching any
URL a caller names would make the gateway an open proxy into its own network. Redirects are not
followed for the same reason. Cloud URIs (``s3://``, ``gs://``) need Label Studio's presigning:
point the task at Label Studio (``/tasks/<id>/presign/?fileuri=...``) instead.

Tokens: a legacy token is sent as ``Authorization: Token <key>``; a personal access token (a JWT)
is exchanged at ``/api/token/refresh`` for an access token, kept until shortly before it
expires, as Label Studio's own SDK does.

Example::

    fetcher = TaskImageFetcher(http, settings.labelstudio, max_bytes=10_000_000,
                               max_pixels=40_000_000)
    data, info = await fetcher.fetch("/data/upload/3/photo.jpg")
"""

from __future__ import annotations

import base64
import binascii
import time
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import httpx

from gateway.labelstudio.settings import LabelStudioSettings
from yoloserve.errors import ImageTooLarge, InvalidTask, TaskImageUnavailable
from yoloserve.images import ImageInfo, inspect_image

_ACCESS_TOKEN_TTL_S = 240.0  # Label Studio's access tokens live 5 minutes: renew before


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class TaskImageFetcher:
    """Fetches task images within the upload limits.

    Args:
        http: The gateway's HTTP client.
        settings: Where Label Studio is, its token, the other allowed origins.
        max_bytes: Largest image (``GATEWAY_MAX_UPLOAD_BYTES``).
        max_pixels: Largest width x height (``GATEWAY_MAX_IMAGE_PIXELS``).
    """

    def __init__(self, http: httpx.AsyncClient, settings: LabelStudioSettings, *,
                 max_bytes: int, max_pixels: int) -> None:
        self.http, self.settings = http, settings
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self._access: tuple[str, float] | None = None

    async def fetch(self, url: str) -> tuple[bytes, ImageInfo]:
        """The image ``url`` names, read and checked like an upload.

        Raises:
            InvalidTask: A URL it may not fetch (scheme, origin, no ``LABELSTUDIO_URL``).
            TaskImageUnavailable: The host failed or answered other than 200.
            ImageTooLarge, InvalidImage: as for an upload.
        """
        if url.startswith("data:"):
            data = self._decode_data_uri(url)
        else:
            data = await self._download(*self._resolve(url))
        return data, inspect_image(data, self.max_pixels)

    def _resolve(self, url: str) -> tuple[str, bool]:
        """The absolute URL and whether Label Studio's token goes with it."""
        base = self.settings.base_url
        if url.startswith("/") and not url.startswith("//"):
            if base is None:
                raise InvalidTask(
                    f"the task's image {url!r} is on Label Studio, and LABELSTUDIO_URL is not set"
                )
            return urljoin(base + "/", url.lstrip("/")), True
        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidTask(
                f"the task's image {url[:80]!r} is not an http(s) or data: URL; cloud storage "
                "URIs need Label Studio's presigned URLs"
            )
        if base is not None and _origin(url) == _origin(base):
            return url, True
        if _origin(url) in {origin.lower() for origin in self.settings.image_origins}:
            return url, False
        raise InvalidTask(
            f"the gateway does not fetch images from {_origin(url)!r}: only from LABELSTUDIO_URL "
            "and LABELSTUDIO_IMAGE_ORIGINS"
        )

    async def _download(self, url: str, with_token: bool) -> bytes:
        headers = {"Authorization": await self._authorization()} if with_token else {}
        try:
            async with self.http.stream("GET", url, headers=headers, follow_redirects=False,
                                        timeout=self.settings.fetch_timeout_s) as response:
                if response.status_code != 200:
                    raise TaskImageUnavailable(
                        f"GET {url} answered {response.status_code}"
                        + (" (is LABELSTUDIO_API_KEY right?)"
                           if response.status_code in (401, 403) else "")
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ImageTooLarge(f"the task's image is larger than {self.max_bytes} B")
                return bytes(body)
        except httpx.HTTPError as exc:
            raise TaskImageUnavailable(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc

    def _decode_data_uri(self, url: str) -> bytes:
        header, sep, payload = url[len("data:"):].partition(",")
        if not sep:
            raise InvalidTask("a data: URI without a comma")
        # base64 grows data by 4/3: refuse before decoding what cannot fit anyway.
        if len(payload) > self.max_bytes * 4 // 3 + 4:
            raise ImageTooLarge(f"the task's image is larger than {self.max_bytes} B")
        try:
            if header.endswith(";base64"):
                return base64.b64decode(payload, validate=True)
            return unquote_to_bytes(payload)
        except (binascii.Error, ValueError) as exc:
            raise InvalidTask(f"the data: URI does not decode: {exc}") from exc

    async def _authorization(self) -> str:
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        if not key:
            raise InvalidTask("the task's image is on Label Studio, and LABELSTUDIO_API_KEY is "
                              "not set")
        if key.count(".") != 2:  # a legacy token; a personal access token is a JWT
            return f"Token {key}"
        if self._access is None or self._access[1] < time.monotonic():
            self._access = (await self._refresh(key), time.monotonic() + _ACCESS_TOKEN_TTL_S)
        return f"Bearer {self._access[0]}"

    async def _refresh(self, refresh_token: str) -> str:
        url = f"{self.settings.base_url}/api/token/refresh"
        try:
            response = await self.http.post(url, json={"refresh": refresh_token},
                                            timeout=self.settings.fetch_timeout_s)
            access = response.json().get("access") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise TaskImageUnavailable(f"POST {url} failed: {exc}") from exc
        if not isinstance(access, str):
            raise TaskImageUnavailable(
                f"POST {url} gave no access token ({response.status_code}): is "
                "LABELSTUDIO_API_KEY a valid personal access token?"
            )
        return access
