"""A small stand-in for ComfyUI's HTTP API on 127.0.0.1 (aiohttp): ``POST /prompt``, ``/ws``,
``/history/{id}``, ``/view``. It runs the prompt with the pack's in-process runner and, like
ComfyUI 0.3.64 can, sends ``execution_success`` before ``/history`` holds the outputs.

``broken=True``: every prompt fails with an ``execution_error`` (a server that lost its GPU).
"""
from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path


class StandIn:
    def __init__(self, out_dir: Path, history_delay: float = 0.5, send_executed: bool = True, broken: bool = False):
        self.out_dir, self.history_delay, self.send_executed, self.broken = out_dir, history_delay, send_executed, broken
        self.history: dict = {}
        self.sockets: dict = {}
        self.prompts = 0
        self.url = ""

    def start(self) -> "StandIn":
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(30)
        return self

    def _serve(self, ready):
        from aiohttp import web

        async def ws_handler(request):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            self.sockets[request.query.get("clientId")] = ws
            async for _ in ws:
                pass
            return ws

        async def prompt_handler(request):
            body = await request.json()
            pid = uuid.uuid4().hex
            self.prompts += 1
            asyncio.get_running_loop().create_task(self._execute(pid, body["prompt"], body.get("client_id")))
            return web.json_response({"prompt_id": pid, "number": self.prompts, "node_errors": {}})

        async def history_handler(request):
            pid = request.match_info["pid"]
            return web.json_response({pid: self.history[pid]} if pid in self.history else {})

        async def view_handler(request):
            q = request.query
            return web.FileResponse(self.out_dir / q.get("subfolder", "") / q["filename"])

        async def main():
            app = web.Application()
            app.router.add_get("/ws", ws_handler)
            app.router.add_post("/prompt", prompt_handler)
            app.router.add_get("/history/{pid}", history_handler)
            app.router.add_get("/view", view_handler)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            ready.set()
            await asyncio.Event().wait()

        asyncio.run(main())

    async def _send(self, cid, kind, data):
        ws = self.sockets.get(cid)
        if ws is not None:
            await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def _execute(self, pid, prompt, cid):
        from remaster import host
        from remaster.headless import runner
        from remaster.headless.cli import node_mappings

        await asyncio.sleep(0.05)
        await self._send(cid, "execution_start", {"prompt_id": pid})
        if self.broken:
            await self._send(cid, "execution_error", {"prompt_id": pid, "node_id": "1", "node_type": "RemasterLoadVideo",
                                                      "exception_type": "RuntimeError", "exception_message": "CUDA error"})
            return
        host.set_dirs(output_dir=str(self.out_dir))
        result = await asyncio.to_thread(runner.run, prompt, node_mappings())
        outputs = {}
        for nid, r in result.items():
            for p in runner.output_paths({nid: r}):
                rel = Path(p).relative_to(self.out_dir)
                outputs[nid] = {"videos": [{"filename": rel.name, "subfolder": str(rel.parent) if str(rel.parent) != "." else "",
                                            "type": "output"}]}
        for nid, out in outputs.items():
            if self.send_executed:
                await self._send(cid, "executed", {"node": nid, "output": out, "prompt_id": pid})
        await self._send(cid, "execution_success", {"prompt_id": pid})
        await self._send(cid, "executing", {"node": None, "prompt_id": pid})
        await asyncio.sleep(self.history_delay)  # history written after the success message
        self.history[pid] = {"outputs": outputs, "status": {"completed": True}}
