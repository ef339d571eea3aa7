"""systemd's readiness notification, ``sd_notify(3)``, in the few lines the protocol needs.

When systemd starts a ``Type=notify`` service it sets ``$NOTIFY_SOCKET`` to the
path of a Unix datagram socket (a leading ``@`` means the abstract namespace).
The service sends newline-separated ``KEY=VALUE`` assignments to it in one
datagram: ``READY=1`` once it serves, ``STOPPING=1`` when it begins to shut
down, ``STATUS=...`` a line for ``systemctl status``, ``MAINPID=...``
(systemd's documented protocol, sd_notify(3), "Notes").  Without
``$NOTIFY_SOCKET`` nothing is sent; a failure to send is logged, never fatal.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("netstack.serve")


def notify(**fields) -> bool:
    """Send ``KEY=VALUE`` lines (``notify(READY=1, STATUS="...")``); True if sent."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]                  # the abstract namespace
    message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall(message)
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True
