// Shared helpers of the Remaster web extensions (plain ES module, no build step).
// ComfyUI loads every .js file of WEB_DIRECTORY as a module; this one registers nothing itself.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

export { app, api };

export const FRAMES_TYPE = "REMASTER_FRAMES";
export const LOAD_VIDEO = "RemasterLoadVideo";
export const SAVE_VIDEO = "RemasterSaveVideo";
// widget options a node sets on a STRING input to get an editor on it
export const EDITOR_OPTION = "remaster_editor";

/** A widget of `node` by name (or undefined). */
export function widget(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

/** URL of a file in ComfyUI's input/output/temp folder, served by ComfyUI's /view. */
export function viewUrl(entry) {
  const p = new URLSearchParams({
    filename: entry.filename,
    subfolder: entry.subfolder || "",
    type: entry.type || "output",
  });
  return api.apiURL(`/view?${p}`);
}

/** Split a combo value like "clips/a.mp4" or "a.mp4 [input]" into a /view entry. */
export function inputEntry(value) {
  let name = String(value || "");
  let type = "input";
  const m = name.match(/^(.*?)\s*\[(input|output|temp)\]$/);
  if (m) {
    name = m[1];
    type = m[2];
  }
  const i = name.lastIndexOf("/");
  return { filename: i >= 0 ? name.slice(i + 1) : name, subfolder: i >= 0 ? name.slice(0, i) : "", type };
}

const LOAD_PARAMS = ["start_time", "end_time", "every_nth", "resize", "max_side", "width", "height", "force_fps"];

/** Query parameters of our routes for the stream a Load Video node makes. */
export function loadParams(loadNode) {
  const e = inputEntry(widget(loadNode, "video")?.value);
  const q = { filename: e.filename, subfolder: e.subfolder, type: e.type };
  for (const k of LOAD_PARAMS) {
    const w = widget(loadNode, k);
    if (w !== undefined) q[k] = String(w.value);
  }
  return q;
}

/** GET one of our JSON routes; throws Error(message from the server) on 4xx/5xx. */
export async function getJSON(path, query) {
  const r = await api.fetchApi(`${path}?${new URLSearchParams(query)}`);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

/** Follow the frames input of `node` upstream (through any stage and reroute) to the Load Video
 * node feeding it; undefined when there is none. */
export function upstreamLoadVideo(node, depth = 0) {
  if (!node || depth > 64) return undefined;
  if (node.type === LOAD_VIDEO || node.comfyClass === LOAD_VIDEO) return node;
  const inputs = node.inputs || [];
  const order = [...inputs.filter((i) => i.type === FRAMES_TYPE), ...inputs.filter((i) => i.type !== FRAMES_TYPE)];
  for (const input of order) {
    if (input.link == null) continue;
    if (input.type !== FRAMES_TYPE && input.type !== "*") continue;
    const slot = inputs.indexOf(input);
    const origin = node.getInputNode ? node.getInputNode(slot) : undefined;
    const found = upstreamLoadVideo(origin, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Chain a method of a node type's prototype: the original runs first. */
export function chain(proto, name, fn) {
  const orig = proto[name];
  proto[name] = function (...args) {
    const r = orig?.apply(this, args);
    fn.apply(this, args);
    return r;
  };
}

/** Call fn after a widget's value changes (from the UI or from code). */
export function onWidgetChange(w, fn) {
  if (!w) return;
  const orig = w.callback;
  w.callback = function (...args) {
    const r = orig?.apply(this, args);
    fn(w.value);
    return r;
  };
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

/** Add a DOM widget that is never saved in the workflow nor sent to the server. */
export function addPanel(node, name, element, height) {
  const w = node.addDOMWidget(name, "remaster_panel", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => (typeof height === "function" ? height() : height),
    getValue: () => undefined,
    setValue: () => {},
  });
  w.serialize = false;
  return w;
}

/** Seconds as m:ss.s */
export function fmtTime(s) {
  if (!isFinite(s)) return "–";
  const m = Math.floor(s / 60);
  const r = s - 60 * m;
  return m ? `${m}:${r.toFixed(1).padStart(4, "0")}` : `${r.toFixed(1)} s`;
}

let styled = false;
export function injectStyle() {
  if (styled) return;
  styled = true;
  document.head.append(
    el("style", {
      text: `
.rm-panel { display:flex; flex-direction:column; gap:4px; width:100%; height:100%; box-sizing:border-box;
  font: 12px sans-serif; color: var(--input-text, #ddd); overflow:hidden; }
.rm-info { font: 11px monospace; opacity: .85; white-space: pre-wrap; line-height: 1.35; }
.rm-err { color: #f77; }
.rm-stage { position:relative; flex:1 1 auto; min-height:60px; background:#000; overflow:hidden; }
.rm-stage video, .rm-stage canvas { position:absolute; inset:0; width:100%; height:100%; object-fit:contain; }
.rm-wipe-line { position:absolute; top:0; bottom:0; width:2px; background:#fff; opacity:.8; pointer-events:none; }
.rm-tag { position:absolute; top:4px; padding:1px 5px; background:rgba(0,0,0,.6); color:#fff; font:11px sans-serif;
  border-radius:3px; pointer-events:none; }
.rm-bar { display:flex; gap:4px; align-items:center; flex-wrap:wrap; }
.rm-bar button { font: 11px sans-serif; padding: 2px 6px; cursor:pointer; background: var(--comfy-input-bg, #222);
  color: var(--input-text, #ddd); border: 1px solid var(--border-color, #555); border-radius: 4px; }
.rm-bar button.on { background: #2a5db0; color:#fff; }
.rm-bar input[type=range] { flex:1 1 80px; min-width:60px; }
.rm-bar input[type=number] { width:44px; background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd);
  border: 1px solid var(--border-color, #555); }
.rm-gallery { overflow:auto; flex:1 1 auto; display:flex; flex-direction:column; gap:6px; }
.rm-kf { display:flex; flex-direction:column; gap:2px; }
.rm-kf.dropped .rm-thumbs { opacity:.3; }
.rm-thumbs { display:flex; gap:4px; overflow-x:auto; }
.rm-thumbs img { height:72px; border:3px solid transparent; cursor:pointer; border-radius:3px; }
.rm-thumbs img.auto { border-color:#777; }
.rm-thumbs img.picked { border-color:#3c9; }
.rm-thumbs img.source { border-color:transparent; cursor:default; opacity:.9; margin-right:6px; }
`,
    })
  );
}
