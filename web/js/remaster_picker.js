// Keyframe picker: after an inpainting run, a gallery of the candidates of each keyframe. Clicking
// a candidate records the pick, "drop group" falls back to the original frames for that keyframe's
// group; both go into the node's picks widget as JSON: {"<keyframe>": <candidate index> | "drop"}
// (keyframes without an entry use the automatic choice). Re-queueing with new picks re-runs only
// the selection, the candidates stay cached.
//
// The node opts in with {"remaster_editor": "keyframe_picks"} on its picks STRING input and sends
// its candidates as {"ui": {"remaster_candidates": [{"keyframe": k, "frames": [start, end],
// "auto": i, "scores": [...], "candidates": [{"filename", "subfolder", "type"}, ...]}, ...]}}.
import { app, addPanel, chain, EDITOR_OPTION, el, injectStyle, onWidgetChange, viewUrl, widget } from "./remaster_common.js";

export function parsePicks(text) {
  try {
    const v = JSON.parse(text || "{}");
    return v && typeof v === "object" && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

export function dumpPicks(picks) {
  const keys = Object.keys(picks).sort((a, b) => Number(a) - Number(b));
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, picks[k]])));
}

function setupPicker(node, picksName) {
  injectStyle();
  const pw = widget(node, picksName);
  const gallery = el("div", { class: "rm-gallery" });
  const info = el("div", { class: "rm-info", text: "run the workflow to see the candidates of each keyframe" });
  const panel = el("div", { class: "rm-panel" }, gallery, info);
  addPanel(node, "remaster_keyframe_picker", panel, () => Math.max(160, Math.min(560, 36 + 100 * (node.remasterCandidates?.length || 1))));
  node.remasterCandidates = node.properties?.remaster_candidates || [];

  const picks = () => parsePicks(pw?.value);
  const setPicks = (p) => {
    if (!pw) return;
    pw.value = dumpPicks(p);
    node.setDirtyCanvas?.(true, true);
    render();
  };

  function render() {
    const p = picks();
    gallery.replaceChildren();
    for (const kf of node.remasterCandidates) {
      const key = String(kf.keyframe);
      const choice = p[key];
      const dropped = choice === "drop";
      const thumbs = el("div", { class: "rm-thumbs" });
      (kf.candidates || []).forEach((c, i) => {
        const score = kf.scores?.[i] != null ? ` · score ${Number(kf.scores[i]).toFixed(3)}` : "";
        const img = el("img", {
          src: viewUrl(c), loading: "lazy", "data-keyframe": key, "data-index": String(i),
          title: `keyframe ${key}, candidate ${i}${i === kf.auto ? " (automatic choice)" : ""}${score}`,
        });
        if (choice === i) img.classList.add("picked");
        else if (choice === undefined && i === kf.auto) img.classList.add("auto");
        img.addEventListener("pointerdown", (e) => e.stopPropagation());
        img.addEventListener("click", (e) => {
          e.stopPropagation();
          const q = picks();
          if (q[key] === i) delete q[key]; // click again: back to automatic
          else q[key] = i;
          setPicks(q);
        });
        thumbs.append(img);
      });
      const dropBtn = el("button", {
        text: dropped ? "restore group" : "drop group",
        title: "drop: keep the original frames for this keyframe's group",
        "data-keyframe": key,
        onclick: (e) => {
          e.stopPropagation();
          const q = picks();
          if (dropped) delete q[key];
          else q[key] = "drop";
          setPicks(q);
        },
      });
      const span = kf.frames ? ` (frames ${kf.frames[0]}–${kf.frames[1]})` : "";
      const state = dropped ? "dropped" : choice !== undefined ? `picked ${choice}` : `auto ${kf.auto ?? "–"}`;
      const head = el("div", { class: "rm-bar" }, el("span", { text: `keyframe ${key}${span}: ${state}` }), dropBtn);
      gallery.append(el("div", { class: `rm-kf${dropped ? " dropped" : ""}` }, head, thumbs));
    }
    const n = Object.keys(p).length;
    info.textContent = node.remasterCandidates.length
      ? `${node.remasterCandidates.length} keyframes · ${n} manual choices · click a candidate to pick it, again to undo`
      : "run the workflow to see the candidates of each keyframe";
  }

  chain(node, "onExecuted", (output) => {
    const list = output?.remaster_candidates;
    if (!Array.isArray(list)) return;
    node.remasterCandidates = list;
    node.properties = node.properties || {};
    node.properties.remaster_candidates = list;
    render();
    node.setSize?.([node.size[0], Math.max(node.size[1], node.computeSize?.()[1] || 0)]);
  });
  chain(node, "onConfigure", () => {
    node.remasterCandidates = node.properties?.remaster_candidates || [];
    render();
  });
  onWidgetChange(pw, render);
  render();
}

app.registerExtension({
  name: "Remaster.KeyframePicker",
  beforeRegisterNodeDef(nodeType, nodeData) {
    const inputs = { ...(nodeData.input?.required || {}), ...(nodeData.input?.optional || {}) };
    const name = Object.keys(inputs).find((k) => inputs[k]?.[1]?.[EDITOR_OPTION] === "keyframe_picks");
    if (!name) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      setupPicker(this, name);
    });
  },
});
