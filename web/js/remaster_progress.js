// Progress text in Remaster nodes while they run: frames done, frames/s, time left.
// The server sends "remaster.progress" websocket messages from host.Progress
// ({node, label, done, total, fps, eta, closed}); the text is drawn under the node.
import { app, api, fmtTime } from "./remaster_common.js";

export function progressText(p) {
  const total = p.total ? `/${p.total}` : "";
  const label = p.label ? `${p.label}: ` : "";
  if (p.closed) return `${label}${p.done}${total} frames done`;
  const fps = p.fps > 0 ? ` · ${p.fps >= 10 ? p.fps.toFixed(0) : p.fps.toFixed(2)} fr/s` : "";
  const eta = p.total && p.fps > 0 ? ` · ${fmtTime(p.eta)} left` : "";
  return `${label}${p.done}${total} frames${fps}${eta}`;
}

function findNode(id) {
  const g = app.graph;
  if (!g || id == null) return undefined;
  // "12" for a node of the main graph; "12:5" for node 5 inside subgraph node 12: show it on 12
  const s = String(id).split(":")[0];
  return g.getNodeById(s) ?? g.getNodeById(Number(s));
}

app.registerExtension({
  name: "Remaster.Progress",
  setup() {
    api.addEventListener("remaster.progress", ({ detail }) => {
      const node = findNode(detail?.node);
      if (!node) return;
      const started = node.remasterProgress?.started ?? performance.now();
      node.remasterProgress = { ...detail, text: progressText(detail), started };
      if (detail.closed) node.remasterProgress.text += ` in ${fmtTime((performance.now() - started) / 1000)}`;
      node.setDirtyCanvas?.(true, false);
      app.graph.setDirtyCanvas?.(true, false);
    });
    api.addEventListener("execution_start", () => {
      for (const n of app.graph?._nodes || []) if (n.remasterProgress) delete n.remasterProgress;
    });
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData.category || "").startsWith("Remaster")) return;
    const orig = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const r = orig?.call(this, ctx, ...rest);
      const p = this.remasterProgress;
      if (p && !this.flags?.collapsed) {
        ctx.save();
        ctx.font = "12px sans-serif";
        const w = ctx.measureText(p.text).width + 12;
        ctx.fillStyle = "rgba(0,0,0,0.7)";
        ctx.fillRect(0, this.size[1] + 4, w, 18);
        if (p.total && !p.closed) {
          ctx.fillStyle = "rgba(60,160,90,0.8)";
          ctx.fillRect(0, this.size[1] + 20, Math.min(1, p.done / p.total) * w, 2);
        }
        ctx.fillStyle = "#fff";
        ctx.fillText(p.text, 6, this.size[1] + 17);
        ctx.restore();
      }
      return r;
    };
  },
});
