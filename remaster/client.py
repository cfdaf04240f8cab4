"""``python -m remaster submit``: queue an API workflow on a running ComfyUI and follow it.

One prompt id per video, however long (the stream is chunked inside the nodes, never by
re-queueing). Progress comes from ComfyUI's ``/ws``; an ``execution_error`` is reported with the
node that failed; the saved files are printed from ``/history``.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path


def submit(args) -> int:
    from . import runner

    prompt = runner.load_workflow(args.workflow)
    prompt = runner.apply_overrides(prompt, args.set, args.input, args.output)
    return asyncio.run(_submit(prompt, args.server.rstrip("/"), args.timeout))


def _ws_url(server: str, client_id: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server[len("https://"):] + f"/ws?clientId={client_id}"
    return "ws://" + server.split("://", 1)[-1] + f"/ws?clientId={client_id}"


async def _submit(prompt: dict, server: str, timeout: float) -> int:
    import aiohttp

    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(_ws_url(server, client_id), heartbeat=30) as ws:
            async with session.post(f"{server}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = await r.json(content_type=None)
                if r.status != 200 or "prompt_id" not in body:
                    print(f"error: the server refused the workflow: {_describe_refusal(body)}", file=sys.stderr)
                    return 1
            prompt_id = body["prompt_id"]
            print(f"prompt_id {prompt_id}", file=sys.stderr)
            code = await _follow(ws, prompt_id, prompt, timeout)
        if code != 0:
            return code
        async with session.get(f"{server}/history/{prompt_id}") as r:
            hist = (await r.json()).get(prompt_id, {})
    for nid, out in (hist.get("outputs") or {}).items():
        for v in out.get("videos", []) + out.get("gifs", []):
            sub = v.get("subfolder", "")
            print(str(Path(sub) / v["filename"]) if sub else v["filename"])
    return 0


def _describe_refusal(body) -> str:
    if not isinstance(body, dict):
        return str(body)
    parts = []
    err = body.get("error")
    if isinstance(err, dict):
        parts.append(err.get("message", "") + (": " + err.get("details", "") if err.get("details") else ""))
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            parts.append(f"node {nid} ({ne.get('class_type', '')}): {e.get('message', '')} {e.get('details', '')}".strip())
    return "; ".join(p for p in parts if p) or json.dumps(body)


async def _follow(ws, prompt_id: str, prompt: dict, timeout: float) -> int:
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = None
    while True:
        left = deadline - loop.time()
        if left <= 0:
            print(f"error: no result after {timeout:.0f}s (prompt {prompt_id} may still be running)", file=sys.stderr)
            return 1
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=left)
        except asyncio.TimeoutError:
            continue
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            print("error: the websocket to the server closed", file=sys.stderr)
            return 1
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # binary previews
        data = json.loads(msg.data)
        kind, d = data.get("type"), data.get("data", {})
        if d.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "executing":
            node = d.get("node")
            if node is None:
                print("", file=sys.stderr)
                return 0
            current = node
            title = ((prompt.get(node) or {}).get("_meta") or {}).get("title") or (prompt.get(node) or {}).get("class_type", "")
            print(f"\n· {node} {title}", file=sys.stderr, end="")
        elif kind == "progress":
            print(f"\r· {current} {d.get('value')}/{d.get('max')}", file=sys.stderr, end="")
        elif kind == "execution_error":
            print(
                f"\nerror: node {d.get('node_id')} ({d.get('node_type')}) failed: "
                f"{d.get('exception_type', '')}: {d.get('exception_message', '').strip()}",
                file=sys.stderr,
            )
            return 1
        elif kind == "execution_interrupted":
            print("\nerror: the run was interrupted on the server", file=sys.stderr)
            return 1
        elif kind == "execution_success":
            print("", file=sys.stderr)
            return 0
