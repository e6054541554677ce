"""Who may call the agent's mutual-TLS listener, checked on every call.

TLS has already checked that the client's certificate was issued by a fleet CA. On top:

- a certificate the fleet revoked (``crl.pem``: a removed device, a controller certificate
  rotated after a laptop was lost) is refused (``UNAUTHENTICATED``);
- every method is the controller's only (role ``controller`` in the certificate), unless it is
  named in ``peer_methods``, which a device's certificate may call too. A method added later is
  therefore the controller's until someone says otherwise (deny by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from agent.trust_store import CONTROLLER, DEVICE, TrustStore

log = logging.getLogger("edgefleet.agent")


class ClientCertPolicy(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, trust: TrustStore, peer_methods: Iterable[str] = ()) -> None:
        self.trust = trust
        self.peer_methods = frozenset(peer_methods)

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        return _guarded(handler, lambda context: self.admit(method, context))

    def admit(self, method: str, context: grpc.ServicerContext) -> None:
        """Abort the call unless its client certificate may call ``method``."""
        pems = (context.auth_context() or {}).get("x509_pem_cert") or []
        if not pems:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "a client certificate of the fleet CA is required")
        cert = self.trust.client(pems[0])
        why = self.trust.revoked(cert.serial)
        if why is not None:
            log.warning("refused %s: certificate %x (%s) is revoked (%s)", method,
                        cert.serial, cert.name, why)
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"client certificate {cert.serial:x} ({cert.name}) was revoked by "
                          f"the fleet ({why})")
        if cert.role == CONTROLLER or (cert.role == DEVICE and method in self.peer_methods):
            return
        log.warning("refused %s to %s (a %s certificate)", method, cert.name,
                    cert.role or "role-less")
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"{method} is served to the fleet controller only; {cert.name!r} "
                      f"presented a {cert.role or 'role-less'} certificate")


_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler),
          ("unary_stream", grpc.unary_stream_rpc_method_handler),
          ("stream_unary", grpc.stream_unary_rpc_method_handler),
          ("stream_stream", grpc.stream_stream_rpc_method_handler))


def _guarded(handler: Any, admit: Callable[[grpc.ServicerContext], None]) -> Any:
    """The same RPC handler with ``admit(context)`` run before it."""
    for kind, make in _KINDS:
        inner = getattr(handler, kind)
        if inner is None:
            continue

        def guarded(request: Any, context: grpc.ServicerContext, inner: Any = inner) -> Any:
            admit(context)
            return inner(request, context)

        return make(guarded, handler.request_deserializer, handler.response_serializer)
    return handler
