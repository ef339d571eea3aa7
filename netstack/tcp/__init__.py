"""TCP (RFC 9293), sans-I/O.  Where things are, in reading order:

  state.py        the eleven states (RFC 9293 §3.3.2)
  seq.py          32-bit sequence arithmetic (wraps; never compare with plain <): the only copy
  events.py       typed events: ConnEvent for the user, StateChange (old, new, cause) and RecoveryEvent for observers
  connection.py   the state machine: segment arrival in RFC 9293 §3.10.7 order, user calls, timers
                  fire; it orchestrates the parts below and talks to its host only through host.py
  send_space.py   SND.UNA/NXT/MAX/WND and the send buffer (buffers.py)
  recv_space.py   RCV.NXT, the advertised window (SWS, never shrinks), receive buffer, out-of-order queue
  negotiation.py  MSS, window scale, timestamps and PAWS, SACK-permitted
  delack.py       delayed ACK and quick-ACK
  sender.py       what goes out and when: segmentation, Nagle, SWS, persist, keep-alive
  recovery.py     THE RETRANSMISSION TIMER fires here; fast retransmit, SACK recovery, TLP, path MTU,
                  D-SACK on receipt, undo of spurious recoveries (Eifel, D-SACK, F-RTO)
  rto.py          the RTO value (RFC 6298 estimator, Karn)
  sack.py         the sender's SACK scoreboard (RFC 6675)
  rack.py         loss detection behind one interface: RACK-TLP (RFC 8985, default) or RFC 6675
  prr.py          Proportional Rate Reduction (RFC 6937) in SACK recovery
  congestion/     congestion control behind one small interface; cubic.py (RFC 9438 + HyStart++,
                  RFC 9406; the default), newreno.py (RFC 5681 + RFC 6582)
  timers.py       one exclusive slot (retransmit | persist | keep-alive | TIME-WAIT | FIN-WAIT-2)
                  plus the independent delayed-ACK, TLP and RACK reordering timers
  segment.py      serialising: options and segment bytes (the only place), the pure-ACK template
  host.py         ConnectionHost: the one interface out of a Connection
  listener.py     SYN queue + accept queue
  layer.py        TCPLayer: demux, RSTs for closed ports, counters; the host of every connection;
                  their timers in one deadline heap (poll/next_deadline never walk them all)
  isn.py          initial sequence numbers, RFC 6528
  config.py       TCPConfig: every tunable

User-facing API (what netstack.sockets builds on):

  layer = Stack(link, addr, tcp=TCPConfig(...)).tcp   # the stack builds its TCPLayer; on_output = stack.kick
  layer = TCPLayer(local_addr, counters=..., config=TCPConfig(...), isn_secret=None)   # alone, sans-I/O
  lst = layer.listen(port, backlog=128)          # OSError(EADDRINUSE) if taken
      lst.on_event(ListenerEvent.ACCEPTABLE); lst.accept() -> Connection | None; lst.pending; lst.close()
  conn = layer.connect(dst, dst_port, now, src_port=None, nodelay=None)   # SYN already in outbox
      conn.on_event(ev)    ev a ConnEvent: ESTABLISHED READABLE WRITABLE EOF RESET REFUSED TIMEOUT CLOSED
                           (CLOSED always comes last; RESET/REFUSED/TIMEOUT precede it)
      conn.send(data) -> int accepted (0: buffer full, wait for WRITABLE)
      conn.recv(n) -> bytes (b"" at EOF; BlockingIOError if nothing yet; the error after a failure)
      conn.recv_into(buf) -> int; conn.readable / conn.writable (byte counts); conn.at_eof
      conn.shutdown_write(); conn.close(); conn.abort(); conn.set_nodelay(bool)
      conn.set_congestion("cubic" | "newreno"); conn.congestion
      conn.set_keepalive(on, idle=, interval=, count=)
      conn.error (ConnectionRefusedError / ConnectionResetError / TimeoutError, with errno)
      conn.state (State enum), conn.transitions (StateChanges), conn.info() (like `ss -tin`)
  layer.on_transition = callback(conn, StateChange)    # every connection's state changes
  layer.on_recovery = callback(conn, RecoveryEvent)    # every congestion or loss-recovery event
  User calls never transmit by themselves (they have no "now"): they ask the layer for
  a flush and the layer calls on_output(); the stack then runs poll(now) and drains
  the outbox.  Calls made from inside an on_event callback go out in the same pass.
"""
from .config import TCPConfig
from .connection import Connection
from .events import ConnEvent, ListenerEvent, StateChange
from .layer import TCPLayer
from .listener import Listener
from .state import State

__all__ = ["TCPConfig", "Connection", "ConnEvent", "ListenerEvent", "State", "StateChange", "TCPLayer", "Listener"]
