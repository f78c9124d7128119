"""AdminService as the console calls it: one call per page action, with the operator's token; the
control plane's refusals as typed errors the pages turn into status codes."""

from __future__ import annotations

from typing import Any

import grpc

from cinesync.v1 import admin_pb2_grpc as admin_grpc


class Refused(Exception):
    """The control plane refused the call: ``status`` is the HTTP status the console answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TokenRefused(Refused):
    """The token is missing, unknown or revoked: the operator must log in again."""


HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class AdminClient:
    """Calls AdminService at ``address`` (host:port) on one channel, each call with a given token."""

    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> admin_grpc.AdminServiceStub:
        if self._channel is None:  # created on the serving event loop
            self._channel = grpc.aio.insecure_channel(self.address)
        return admin_grpc.AdminServiceStub(self._channel)

    async def call(self, method: str, request: Any, *, token: str) -> Any:
        """AdminService.``method``'s reply; Refused (TokenRefused for the token) otherwise."""
        try:
            return await getattr(self._stub(), method)(
                request, timeout=self.timeout_s, metadata=(("authorization", f"Bearer {token}"),))
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise TokenRefused(401, "that token is not accepted by the control plane") from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise Refused(503, f"the control plane at {self.address} is unreachable: {details}") from None
            raise Refused(HTTP_STATUS.get(code, 502), f"{code.name}: {details}") from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
