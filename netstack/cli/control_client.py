"""The client side of a running stack's control socket (:mod:`netstack.control`), for
``netstack ss`` and ``netstack stats``: the common options and one request."""
from __future__ import annotations

import json
import socket

from netstack.cli import UsageError

#: seconds to wait for the stack's answer
TIMEOUT = 10.0


class ControlError(Exception):
    """The stack could not be asked, or refused the request; ``str()`` is one line."""


def add_target_arguments(p) -> None:
    from netstack.control import RUN_DIR
    p.add_argument("--netns", default="netstack", metavar="NS",
                   help=f"the namespace `netstack serve --netns NS` runs in (default netstack); "
                        f"its control socket is {RUN_DIR}/NS.sock")
    p.add_argument("--socket", metavar="PATH", help="the control socket's path, instead of the one --netns names")


def socket_path(args) -> str:
    from netstack.control import default_path
    if args.socket:
        return args.socket
    try:
        return default_path(args.netns)
    except ValueError as exc:
        raise UsageError(f"--netns: {exc}") from None


def request(path: str, obj: dict) -> dict:
    """Send one request, return the reply's object (``ok`` true); ControlError otherwise."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        try:
            s.connect(path)
        except FileNotFoundError:
            raise ControlError(f"no running stack: {path} does not exist (is `netstack serve` running "
                               f"with that --netns?)") from None
        except ConnectionRefusedError:
            raise ControlError(f"no running stack answers on {path}") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: only its owner (root) may ask the stack") from None
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        raise ControlError(f"no answer from {path} within {TIMEOUT:g} s") from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    finally:
        s.close()
    try:
        reply = json.loads(buf)
    except ValueError:
        raise ControlError(f"{path}: the stack's reply is not JSON") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise ControlError(f"the stack refused the request: {reply.get('error') if isinstance(reply, dict) else reply}")
    return reply
