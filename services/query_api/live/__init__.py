"""Live stream of readings, machine online/offline changes and alert changes (server-sent events).

Why SSE rather than WebSocket: the stream only flows from server to browser; SSE is plain HTTP
(proxies, load balancers, the same ``Authorization`` header and permission check as history),
has ids and resumption built into the format, and needs no second protocol in the service.
The console reads it with ``fetch`` streaming so the token travels in a header, never a URL.

Feed: each query_api process binds its own bounded (``x-max-length``, overflow ``drop-head``),
non-durable, exclusive queue to the ``telemetry`` exchange, so a slow process loses live events
instead of holding the pipeline back; each client has its own bounded buffer and is told about a
loss with a ``gap`` event (the console fills it from history).

Writes: a stream busy with events writes what came meanwhile in one go at the hub's next flush
(``LIVE_FLUSH_MS``, 500 ms), not one socket write per event; a quiet stream writes its next
event at once. The streams take turns at the flush (one slot of the period each), so streams
that got the same events together do not all write in the same tick.
"""
