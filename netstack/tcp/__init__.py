"""TCP (RFC 9293), sans-I/O.  Where things are:

  seq.py          32-bit sequence arithmetic (wraps; never compare with plain <)
  isn.py          initial sequence numbers, RFC 6528
  config.py       TCPConfig: every tunable
  rto.py          RFC 6298 RTO estimator (the value of the retransmission timer)
  timers.py       per-connection timers: retransmit, delack, persist, keepalive, timewait
  buffers.py      send buffer/retransmission queue, receive buffer, out-of-order queue
  congestion/     one small interface; newreno.py (RFC 5681 + RFC 6582)
  connection.py   the RFC 9293 state machine (segment arrival, user calls, timers fire)
  listener.py     SYN queue + accept queue
  output.py       serialize a segment via netstack.wire.tcp.build_tcp
  layer.py        TCPLayer: the stack's Transport (demux, RSTs for closed ports, counters)
"""
from .config import TCPConfig
from .connection import Connection, State
from .layer import TCPLayer
from .listener import Listener

__all__ = ["TCPConfig", "Connection", "State", "TCPLayer", "Listener"]
