// SAM2 point editor: pick a frame of the upstream Load Video's stream, click positive/negative
// points and drag boxes for one or more objects; the prompts live in the node's prompts widget
// as the same JSON API users send:
//   [{"frame": i, "obj_id": k, "points": [[x, y, label], ...], "boxes": [[x0, y0, x1, y1], ...]}]
// label 1 = positive, 0 = negative; x, y in pixels of the stream the node receives (Load Video's
// output size). A node opts in by giving its STRING input the option
// {"remaster_editor": "sam2_prompts"}; a Remaster*SAM2* node's STRING input "prompts_json" (SAM2
// Video Mask) or "prompts" gets it too.
import {
  api, app, addPanel, chain, EDITOR_OPTION, el, getJSON, injectStyle, loadParams, onWidgetChange,
  upstreamLoadVideo, widget,
} from "./remaster_common.js";

const COLORS = ["#35d07f", "#f5a623", "#4a90e2", "#d0021b", "#bd10e0", "#f8e71c", "#50e3c2", "#b8e986"];
const color = (obj) => COLORS[(obj - 1 + COLORS.length * 100) % COLORS.length];

export function parsePrompts(text) {
  try {
    const v = JSON.parse(text || "[]");
    return Array.isArray(v) ? v.filter((e) => e && typeof e === "object") : [];
  } catch {
    return null; // not JSON: the user is typing; keep the editor's state
  }
}

/** Canonical JSON: entries sorted by frame then object, empty entries dropped; "" when none
 * (an empty widget means "no JSON prompts" to the SAM2 node). */
export function dumpPrompts(list) {
  const out = list
    .filter((e) => (e.points?.length || 0) + (e.boxes?.length || 0) > 0)
    .map((e) => ({ frame: e.frame, obj_id: e.obj_id, points: e.points || [], boxes: e.boxes || [] }))
    .sort((a, b) => a.frame - b.frame || a.obj_id - b.obj_id);
  return out.length ? JSON.stringify(out) : "";
}

function setupEditor(node, promptsName) {
  injectStyle();
  const pw = widget(node, promptsName);
  const st = {
    prompts: parsePrompts(pw?.value) || [],
    frame: 0, obj: 1, label: 1, frames: 0, size: [0, 0],
    image: null, mask: null, history: [], key: "", drag: null,
  };
  const canvas = el("canvas", { width: "640", height: "360", style: "cursor:crosshair;touch-action:none" });
  const stage = el("div", { class: "rm-stage" }, canvas);
  const scrub = el("input", { type: "range", min: "0", max: "0", value: "0", title: "frame" });
  const frameNo = el("input", { type: "number", min: "0", value: "0", title: "frame index in the stream" });
  const objNo = el("input", { type: "number", min: "1", max: "1000", value: "1", title: "object id" });
  const btn = (text, title, fn) => el("button", { text, title, onclick: (e) => { e.stopPropagation(); fn(); } });
  const pos = btn("+ point", "clicks add positive points (shift+click: negative)", () => setLabel(1));
  const neg = btn("− point", "clicks add negative points", () => setLabel(0));
  const info = el("div", { class: "rm-info", text: "" });
  const bar1 = el("div", { class: "rm-bar" }, el("span", { text: "frame" }), scrub, frameNo,
    btn("⟳", "reload the frame (after changing Load Video)", () => reload(true)));
  const bar2 = el("div", { class: "rm-bar" }, el("span", { text: "object" }), objNo,
    btn("new", "start a new object", () => setObj(1 + Math.max(0, ...st.prompts.map((e) => e.obj_id)))),
    pos, neg,
    btn("undo", "undo the last change", undo),
    btn("clear frame", "remove this frame's points and boxes", () =>
      change(() => (st.prompts = st.prompts.filter((e) => e.frame !== st.frame)))),
    btn("clear all", "remove all prompts", () => change(() => (st.prompts = []))),
    btn("mask", "preview the mask of this frame (computed by the server)", previewMask));
  const panel = el("div", { class: "rm-panel" }, bar1, stage, bar2, info);
  addPanel(node, "remaster_sam2_editor", panel, () => Math.max(260, node.size[0] * 0.62 + 70));
  node.remasterSam2 = st;

  function setLabel(l) {
    st.label = l;
    pos.classList.toggle("on", l === 1);
    neg.classList.toggle("on", l === 0);
  }
  function setObj(k) {
    st.obj = Math.max(1, Math.min(1000, Math.round(Number(k) || 1)));
    objNo.value = String(st.obj);
    draw();
  }
  setLabel(1);
  objNo.addEventListener("change", () => setObj(objNo.value));

  function entry(create) {
    let e = st.prompts.find((p) => p.frame === st.frame && p.obj_id === st.obj);
    if (!e && create) {
      e = { frame: st.frame, obj_id: st.obj, points: [], boxes: [] };
      st.prompts.push(e);
    }
    return e;
  }
  function write() {
    if (pw) {
      const v = dumpPrompts(st.prompts);
      if (pw.value !== v) {
        pw.value = v;
        node.setDirtyCanvas?.(true, true);
      }
    }
  }
  function change(fn) {
    st.history.push(dumpPrompts(st.prompts));
    if (st.history.length > 200) st.history.shift();
    fn();
    st.mask = null;
    write();
    draw();
  }
  function undo() {
    const prev = st.history.pop();
    if (prev === undefined) return;
    st.prompts = parsePrompts(prev) || [];
    st.mask = null;
    write();
    draw();
  }
  onWidgetChange(pw, (v) => {
    const p = parsePrompts(v);
    if (p && dumpPrompts(p) !== dumpPrompts(st.prompts)) {
      st.prompts = p;
      draw();
    }
  });
  chain(node, "onConfigure", () => {
    st.prompts = parsePrompts(widget(node, promptsName)?.value) || [];
    setTimeout(() => reload(false), 100);
  });
  chain(node, "onConnectionsChange", () => setTimeout(() => reload(false), 50));

  // --- geometry: stream pixels <-> canvas pixels
  function fit() {
    const [w, h] = st.size;
    const cw = canvas.width;
    const ch = canvas.height;
    if (!w || !h) return { s: 1, ox: 0, oy: 0 };
    const s = Math.min(cw / w, ch / h);
    return { s, ox: (cw - w * s) / 2, oy: (ch - h * s) / 2 };
  }
  function toStream(ev) {
    const r = canvas.getBoundingClientRect();
    const cx = ((ev.clientX - r.left) / r.width) * canvas.width;
    const cy = ((ev.clientY - r.top) / r.height) * canvas.height;
    const { s, ox, oy } = fit();
    const x = (cx - ox) / s;
    const y = (cy - oy) / s;
    const clampX = Math.min(st.size[0] - 1, Math.max(0, x));
    const clampY = Math.min(st.size[1] - 1, Math.max(0, y));
    return [Math.round(clampX * 10) / 10, Math.round(clampY * 10) / 10, x >= 0 && y >= 0 && x < st.size[0] && y < st.size[1]];
  }

  function draw() {
    const r = stage.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const W = Math.max(64, Math.round(r.width * dpr));
    const H = Math.max(64, Math.round(r.height * dpr));
    if (canvas.width !== W || canvas.height !== H) {
      canvas.width = W;
      canvas.height = H;
    }
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, W, H);
    const { s, ox, oy } = fit();
    if (st.image) ctx.drawImage(st.image, ox, oy, st.size[0] * s, st.size[1] * s);
    if (st.mask) {
      ctx.globalAlpha = 0.45;
      ctx.drawImage(st.mask, ox, oy, st.size[0] * s, st.size[1] * s);
      ctx.globalAlpha = 1;
    }
    const here = st.prompts.filter((e) => e.frame === st.frame);
    for (const e of here) {
      ctx.strokeStyle = color(e.obj_id);
      ctx.lineWidth = 2 * dpr;
      for (const [x0, y0, x1, y1] of e.boxes || []) ctx.strokeRect(ox + x0 * s, oy + y0 * s, (x1 - x0) * s, (y1 - y0) * s);
      for (const [x, y, l] of e.points || []) {
        const px = ox + x * s;
        const py = oy + y * s;
        const rad = 8 * dpr;
        ctx.beginPath();
        ctx.arc(px, py, rad, 0, 2 * Math.PI);
        ctx.fillStyle = l ? color(e.obj_id) : "#000";
        ctx.fill();
        ctx.strokeStyle = l ? "#fff" : color(e.obj_id);
        ctx.stroke();
        ctx.beginPath(); // + or − mark
        ctx.moveTo(px - rad / 2, py);
        ctx.lineTo(px + rad / 2, py);
        if (l) {
          ctx.moveTo(px, py - rad / 2);
          ctx.lineTo(px, py + rad / 2);
        }
        ctx.strokeStyle = l ? "#000" : "#fff";
        ctx.stroke();
      }
    }
    if (st.drag?.moved) {
      const [x0, y0] = st.drag.a;
      const [x1, y1] = st.drag.b;
      ctx.setLineDash([5 * dpr, 4 * dpr]);
      ctx.strokeStyle = color(st.obj);
      ctx.strokeRect(ox + Math.min(x0, x1) * s, oy + Math.min(y0, y1) * s, Math.abs(x1 - x0) * s, Math.abs(y1 - y0) * s);
      ctx.setLineDash([]);
    }
    const objs = new Set(st.prompts.map((e) => e.obj_id)).size;
    const n = here.reduce((a, e) => a + e.points.length, 0);
    const b = here.reduce((a, e) => a + e.boxes.length, 0);
    if (!info.classList.contains("rm-err"))
      info.textContent = st.frames
        ? `frame ${st.frame}/${st.frames - 1} · ${st.size[0]}×${st.size[1]} · here: ${n} points, ${b} boxes · ` +
          `${st.prompts.length} prompt entries, ${objs} objects · click: point, drag: box, shift: negative`
        : info.textContent;
  }
  new ResizeObserver(() => draw()).observe(stage);

  // --- pointer input: click = point, drag = box
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    e.stopPropagation();
    e.preventDefault();
    if (!st.frames) return;
    const p = toStream(e);
    if (!p[2]) return;
    canvas.setPointerCapture(e.pointerId);
    st.drag = { a: p, b: p, moved: false, neg: e.shiftKey || e.button === 2, x: e.clientX, y: e.clientY };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!st.drag) return;
    e.stopPropagation();
    st.drag.b = toStream(e);
    if (Math.hypot(e.clientX - st.drag.x, e.clientY - st.drag.y) > 6) st.drag.moved = true;
    draw();
  });
  canvas.addEventListener("pointerup", (e) => {
    if (!st.drag) return;
    e.stopPropagation();
    const d = st.drag;
    st.drag = null;
    if (d.moved) {
      const [x0, y0] = d.a;
      const [x1, y1] = toStream(e);
      // SAM2 takes one box per object and frame: a new box replaces the previous one
      change(() => (entry(true).boxes = [[Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]]));
    } else {
      const label = d.neg ? 0 : st.label;
      change(() => entry(true).points.push([d.a[0], d.a[1], label]));
    }
  });
  canvas.addEventListener("wheel", (e) => e.stopPropagation());

  // --- frames
  const cache = new Map();
  let loadSeq = 0;
  async function showFrame(i) {
    const src = upstreamLoadVideo(node);
    if (!src) return;
    i = Math.max(0, Math.min(Math.max(0, st.frames - 1), Math.round(Number(i) || 0)));
    st.frame = i;
    scrub.value = String(i);
    frameNo.value = String(i);
    st.mask = null;
    draw();
    const q = { ...loadParams(src), index: String(i), preview_side: "1024" };
    const key = JSON.stringify(q);
    const my = ++loadSeq;
    try {
      let hit = cache.get(key);
      if (!hit) {
        const r = await api.fetchApi(`/remaster/frame?${new URLSearchParams(q)}`);
        if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
        const img = await createImageBitmap(await r.blob());
        hit = { img, w: Number(r.headers.get("X-Remaster-Width")), h: Number(r.headers.get("X-Remaster-Height")) };
        cache.set(key, hit);
        if (cache.size > 24) cache.delete(cache.keys().next().value);
      }
      if (my !== loadSeq) return;
      st.image = hit.img;
      st.size = [hit.w, hit.h];
      info.classList.remove("rm-err");
      draw();
    } catch (e) {
      if (my !== loadSeq) return;
      info.classList.add("rm-err");
      info.textContent = `frame ${i}: ${e.message || e}`;
    }
  }
  async function reload(force) {
    const src = upstreamLoadVideo(node);
    if (!src) {
      st.frames = 0;
      st.image = null;
      info.classList.add("rm-err");
      info.textContent = "connect a Load Video (Remaster) upstream to place points on its frames";
      draw();
      return;
    }
    const q = loadParams(src);
    const key = JSON.stringify(q);
    if (!force && key === st.key && st.image) return;
    st.key = key;
    if (force) cache.clear();
    try {
      const data = await getJSON("/remaster/video_info", q);
      st.frames = data.stream.frame_count;
      st.size = [data.stream.width, data.stream.height];
      scrub.max = String(Math.max(0, st.frames - 1));
      frameNo.max = String(Math.max(0, st.frames - 1));
      info.classList.remove("rm-err");
      await showFrame(Math.min(st.frame, st.frames - 1));
    } catch (e) {
      st.frames = 0;
      info.classList.add("rm-err");
      info.textContent = String(e.message || e);
      draw();
    }
  }
  scrub.addEventListener("input", () => showFrame(scrub.value));
  frameNo.addEventListener("change", () => showFrame(frameNo.value));
  panel.addEventListener("pointerenter", () => reload(false));

  async function previewMask() {
    const src = upstreamLoadVideo(node);
    if (!src) return;
    const body = {
      ...loadParams(src), index: st.frame, prompts: dumpPrompts(st.prompts),
      model: String(widget(node, "model")?.value ?? ""),
    };
    info.classList.remove("rm-err");
    info.textContent = "computing mask…";
    try {
      const r = await api.fetchApi("/remaster/sam2_preview", { method: "POST", body: JSON.stringify(body) });
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      const img = await createImageBitmap(await r.blob());
      // tint: white mask -> coloured overlay
      const c = new OffscreenCanvas(img.width, img.height);
      const x = c.getContext("2d");
      x.drawImage(img, 0, 0);
      x.globalCompositeOperation = "multiply";
      x.fillStyle = color(st.obj);
      x.fillRect(0, 0, img.width, img.height);
      st.mask = c;
      draw();
    } catch (e) {
      info.classList.add("rm-err");
      info.textContent = `mask preview: ${e.message || e}`;
    }
  }
  node.remasterSam2Api = { showFrame, reload, undo, setObj, setLabel };
  setTimeout(() => reload(false), 200);
}

app.registerExtension({
  name: "Remaster.SAM2Editor",
  beforeRegisterNodeDef(nodeType, nodeData) {
    const inputs = { ...(nodeData.input?.required || {}), ...(nodeData.input?.optional || {}) };
    // opt-in option, or (fallback) a Remaster SAM2 node's STRING input prompts_json / prompts
    const fallback = ["prompts_json", "prompts"].find((k) => inputs[k]?.[0] === "STRING");
    const name =
      Object.keys(inputs).find((k) => inputs[k]?.[1]?.[EDITOR_OPTION] === "sam2_prompts") ||
      (/^Remaster.*SAM2/i.test(nodeData.name) ? fallback : undefined);
    if (!name) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      setupEditor(this, name);
    });
  },
});
