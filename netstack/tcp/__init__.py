"""TCP (RFC 9293), sans-I/O.  Where things are:

  seq.py          32-bit sequence arithmetic (wraps; never compare with plain <)
  isn.py          initial sequence numbers, RFC 6528
  config.py       TCPConfig: every tunable
  rto.py          RFC 6298 RTO estimator (the value of the retransmission timer)
  timers.py       per-connection timers: retransmit, tlp, delack, persist, keepalive, timewait
  buffers.py      send buffer/retransmission queue, receive buffer, out-of-order queue
  congestion/     one small interface; newreno.py (RFC 5681 + RFC 6582)
  state.py        the eleven states (RFC 9293 §3.3.2)
  connection.py   the RFC 9293 state machine (segment arrival, user calls, timers fire)
  sender.py       output: segmentation, Nagle, SWS, persist, keep-alive
  recovery.py     THE RETRANSMISSION TIMER fires here; fast retransmit, SACK recovery, TLP
  sack.py         the sender's SACK scoreboard (RFC 6675)
  listener.py     SYN queue + accept queue
  output.py       serialize a segment via netstack.wire.tcp.build_tcp
  layer.py        TCPLayer: the stack's Transport (demux, RSTs for closed ports, counters)

User-facing API (what netstack.sockets builds on):

  layer = Stack(link, addr, tcp=TCPConfig(...)).tcp   # the stack builds its TCPLayer; on_output = stack.kick
  layer = TCPLayer(local_addr, counters=..., config=TCPConfig(...), isn_secret=None)   # alone, sans-I/O
  lst = layer.listen(port, backlog=128)          # OSError(EADDRINUSE) if taken
      lst.on_event("acceptable"); lst.accept() -> Connection | None; lst.pending; lst.close()
  conn = layer.connect(dst, dst_port, now, src_port=None, nodelay=None)   # SYN already in outbox
      conn.on_event(name)  name in: established readable writable eof closed reset refused timeout
                           ("closed" always comes last; reset/refused/timeout precede it)
      conn.send(data) -> int accepted (0: buffer full, wait for "writable")
      conn.recv(n) -> bytes (b"" at EOF; BlockingIOError if nothing yet; the error after a failure)
      conn.recv_into(buf) -> int; conn.readable / conn.writable (byte counts); conn.at_eof
      conn.shutdown_write(); conn.close(); conn.abort(); conn.set_nodelay(bool)
      conn.error (ConnectionRefusedError / ConnectionResetError / TimeoutError, with errno)
      conn.state (State enum, str() like "ESTABLISHED"), conn.info() (like `ss -tin`)
  User calls never transmit by themselves (they have no "now"): they mark the
  connection and call layer.on_output(); the stack then runs poll(now) (the
  layer's next_deadline() is already due) and drains the outbox.  Calls made
  from inside an on_event callback go out in the same on_datagram/poll pass.
"""
from .config import TCPConfig
from .connection import Connection, State
from .layer import TCPLayer
from .listener import Listener

__all__ = ["TCPConfig", "Connection", "State", "TCPLayer", "Listener"]
