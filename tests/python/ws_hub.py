"""A hub member over /ws with Python's `websockets` (pinned in requirements-test.txt), next to a
raw TCP member: sync, see each other online, exchange a broadcast and a directed message, and
see the WebSocket member go offline when it closes.

Usage: python3 ws_hub.py WEB_ADDR HUB_ADDR
"""
import asyncio
import json
import sys

try:
    import websockets
except ImportError:
    sys.exit("FAIL: python package websockets is missing; run: "
             "pip install --user -r tests/python/requirements-test.txt (scripts/test does this)")


async def tcp_lines(reader):
    line = await reader.readline()
    if not line:
        raise RuntimeError("tcp member: server closed")
    return json.loads(line)


async def until(get, pred, what):
    for _ in range(50):
        msg = await get()
        if pred(msg):
            return msg
    raise RuntimeError(f"never saw {what}")


async def main(web, hub):
    host, port = hub.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(json.dumps({"type": "sync", "clientName": "tcpuser"}).encode())
    await until(lambda: tcp_lines(reader), lambda m: m["type"] == "synced", "tcp synced")

    async with websockets.connect(f"ws://{web}/ws", max_size=2**20) as ws:
        async def ws_next():
            return json.loads(await ws.recv())

        await ws.send(json.dumps({"type": "sync", "clientName": "pyuser"}))
        synced = await until(ws_next, lambda m: m["type"] == "synced", "ws synced")
        assert synced["clientName"] == "pyuser", synced
        await until(lambda: tcp_lines(reader),
                    lambda m: m["type"] == "online" and m["clientName"] == "pyuser", "pyuser online")

        await ws.send(json.dumps({"type": "broadcast", "message": {"from": "python", "n": 1}}))
        got = await until(lambda: tcp_lines(reader), lambda m: m["type"] == "broadcast", "broadcast")
        assert got == {"type": "broadcast", "from": "pyuser", "message": {"from": "python", "n": 1}}, got

        writer.write(json.dumps({"type": "info", "to": "pyuser", "message": "hi python"}).encode())
        got = await until(ws_next, lambda m: m["type"] == "info", "info")
        assert got == {"type": "info", "from": "tcpuser", "message": "hi python"}, got

    await until(lambda: tcp_lines(reader),
                lambda m: m["type"] == "offline" and m["clientName"] == "pyuser", "pyuser offline")
    writer.close()
    print(json.dumps({"ok": True}))


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 15))
