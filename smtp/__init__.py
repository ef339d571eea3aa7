"""SMTP for netstack: an RFC 5321 server and client that run on injected transports and streams.

* ``smtp.session``  - the sans-I/O server state machine (bytes + time in; replies, events, deadline out)
* ``smtp.server``   - runs sessions as protocols on transports (create_server) or on any asyncio-style
  reader/writer pair; STARTTLS via ``smtp.tls``
* ``smtp.delivery`` - durable Maildir delivery (fsync before 250)
* ``smtp.workers``  - the threads deliveries run in, their results handed to the event loop in batches
  (to futures, or straight to callbacks)
* ``smtp.client``   - async client on injected streams
* ``smtp.auth``     - users file with scrypt hashes for AUTH PLAIN/LOGIN
"""
from .session import SessionConfig, SmtpSession  # noqa: F401

__all__ = ["SessionConfig", "SmtpSession"]
