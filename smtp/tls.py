"""TLS for STARTTLS (RFC 3207) layered over any stream pair with ``ssl.MemoryBIO``.

``TlsStream(reader, writer, context, server_side=...)`` needs only
``reader.read(n)`` and ``writer.write/drain/close`` of whatever streams carry
the connection: asyncio's kernel streams or netstack's own.  The TLS engine
(``ssl.SSLObject``) never touches a socket: ciphertext goes through two
memory BIOs that this class pumps to and from the streams.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess


def set_nodelay(writer) -> None:
    """Turn Nagle off on the connection under ``writer`` (TCP_NODELAY).

    SMTP writes whole reply batches / whole command groups, so Nagle only adds
    a delayed-ACK stall (e.g. the tail of a 2 KB message held for an ACK).
    asyncio's kernel transports already set TCP_NODELAY; this does the same on
    netstack's (its transport exposes ``netstack_connection``).  Silent when
    the transport offers neither.
    """
    conn = writer.get_extra_info("netstack_connection")
    if conn is not None and hasattr(conn, "set_nodelay"):
        if not getattr(conn, "nodelay", False):      # (netstack's listeners accept with it on)
            conn.set_nodelay(True)
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass


class PlainStream:
    """The plaintext counterpart of TlsStream: read/write/drain straight on the reader/writer pair."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def read(self, n):
        return self.reader.read(n)

    def write(self, data):
        self.writer.write(data)

    def drain(self):
        return self.writer.drain()


class TlsStream:
    """A TLS connection over a reader/writer pair; offers read/readline/write/drain/close."""

    def __init__(self, reader, writer, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None):
        self._reader = reader
        self._writer = writer
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=None if server_side else server_hostname)
        self._eof = False
        self._rbuf = bytearray()

    # -------------------------------------------------------------- handshake

    async def handshake(self) -> None:
        """Run the TLS handshake; raises ssl.SSLError or ConnectionError on failure."""
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._pump_out()
                if not await self._pump_in():
                    raise ConnectionResetError("connection closed during TLS handshake")
        await self._pump_out()

    def version(self) -> str | None:
        return self._ssl.version()

    def cipher(self) -> tuple | None:
        return self._ssl.cipher()

    # -------------------------------------------------------------- stream API

    async def read(self, n: int = 65536) -> bytes:
        if self._rbuf:
            data = bytes(self._rbuf[:n])
            del self._rbuf[:n]
            return data
        return await self._read_record(n)

    async def _read_record(self, n: int) -> bytes:
        while True:
            try:
                data = self._ssl.read(n)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if not await self._pump_in():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def readline(self) -> bytes:
        while True:
            i = self._rbuf.find(b"\n")
            if i >= 0:
                line = bytes(self._rbuf[: i + 1])
                del self._rbuf[: i + 1]
                return line
            chunk = await self._read_record(65536)
            if not chunk:
                line = bytes(self._rbuf)
                self._rbuf.clear()
                return line
            self._rbuf += chunk

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self._ssl.write(view)
            except ssl.SSLWantReadError:   # renegotiation in progress; data is buffered by OpenSSL
                break
            view = view[n:]
        self._flush()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        """Send close_notify if we can, then close the underlying writer."""
        try:
            self._ssl.unwrap()
        except (ssl.SSLError, ValueError):
            pass
        try:
            if not self._writer.is_closing():
                self._flush()
        except (OSError, RuntimeError):
            pass
        self._writer.close()

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def get_extra_info(self, name: str, default=None):
        if name == "ssl_object":
            return self._ssl
        if name == "cipher":
            return self._ssl.cipher()
        if name == "peercert":
            return self._ssl.getpeercert()
        return self._writer.get_extra_info(name, default)

    # -------------------------------------------------------------- BIO pumping

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self._writer.write(data)

    async def _pump_out(self) -> None:
        self._flush()
        await self._writer.drain()

    async def _pump_in(self) -> bool:
        if self._eof:
            return False
        raw = await self._reader.read(65536)
        if not raw:
            self._eof = True
            self._in.write_eof()
            return False
        self._in.write(raw)
        return True


# ------------------------------------------------------------------ contexts


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_context(*, cafile: str | None = None, verify: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def generate_self_signed(cert_path: str, key_path: str, *, hostname: str = "localhost",
                         ips: tuple[str, ...] = ("127.0.0.1",), days: int = 30) -> None:
    """Write a self-signed certificate and key (for tests and demos).

    Uses the ``cryptography`` package when present, else the ``openssl`` CLI.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        san = ",".join([f"DNS:{hostname}"] + [f"IP:{ip}" for ip in ips])
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key_path, "-out", cert_path, "-days", str(days),
                        "-subj", f"/CN={hostname}", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True)
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = [x509.DNSName(hostname)] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
