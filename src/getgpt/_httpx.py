"""The way through httpx, for what the lean path leaves to it (see :mod:`getgpt._senders`).

These adapters give an httpx client the face of :mod:`getgpt._http11`'s pools -- ``send(body)``
returning a reply whose body comes in ``reads()`` -- so the code above them is written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping

import httpx

from ._chunks import coalesce

__all__ = ["AsyncHttpxSender", "HttpxSender"]


class _Reply:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.reason_phrase = response.reason_phrase
        self.headers: Mapping[str, str] = response.headers


class Reply(_Reply):
    def reads(self) -> Iterator[bytes]:
        coalesce(self.response)
        return self.response.iter_bytes()

    def read(self) -> bytes:
        return self.response.read()

    def close(self) -> None:
        self.response.close()


class AsyncReply(_Reply):
    def reads(self) -> AsyncIterator[bytes]:
        coalesce(self.response)
        return self.response.aiter_bytes()

    async def read(self) -> bytes:
        return await self.response.aread()

    async def aclose(self) -> None:
        await self.response.aclose()


class HttpxSender:
    """POSTs to one URL through an :class:`httpx.Client`."""

    def __init__(self, http: httpx.Client, url: str, headers: Mapping[str, str]) -> None:
        self.http = http
        self._url = url
        self._headers = headers

    def send(self, body: bytes) -> Reply:
        request = self.http.build_request("POST", self._url, content=body, headers=self._headers)
        return Reply(self.http.send(request, stream=True))

    def close(self) -> None:
        self.http.close()


class AsyncHttpxSender:
    """POSTs to one URL through an :class:`httpx.AsyncClient`."""

    def __init__(self, http: httpx.AsyncClient, url: str, headers: Mapping[str, str]) -> None:
        self.http = http
        self._url = url
        self._headers = headers

    async def send(self, body: bytes) -> AsyncReply:
        request = self.http.build_request("POST", self._url, content=body, headers=self._headers)
        return AsyncReply(await self.http.send(request, stream=True))

    async def aclose(self) -> None:
        await self.http.aclose()
