#!/usr/bin/env python3
"""The VIP's service: a tiny HTTP server on port 80 that answers every request with its
node name, so the prober knows who answered. asyncio, one process, no thread per request:
200 requests/s cost a few % of a core. Runs on every node all the time (not managed by the
cluster), so what the prober measures is where the address is, not how fast a server starts.

    server.py NAME [PORT]
"""
import asyncio
import sys

NAME = sys.argv[1].encode()
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 80
BODY = NAME + b"\n"
REPLY = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
         b"Connection: close\r\n\r\n" % len(BODY)) + BODY


async def serve(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        writer.write(REPLY)
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()


async def main():
    srv = await asyncio.start_server(serve, "0.0.0.0", PORT, reuse_address=True, backlog=512)
    print(f"serving {NAME.decode()} on :{PORT}", flush=True)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
