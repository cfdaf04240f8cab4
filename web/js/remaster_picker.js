// Keyframe picker: after an inpainting run, a gallery of the candidates of each keyframe (the
// original crop first). Clicking a candidate records the pick, "drop group" keeps that keyframe's
// group original; both go into the node's picks widget in the node's own format: comma-separated
// in keyframe order, each a candidate number (0-based), "drop" or "auto" (e.g. "auto, 2, drop").
// Re-queueing with new picks re-runs only the selection; the candidates stay cached.
//
// The node (Select Candidates) is found by class name, or opts in with
// {"remaster_editor": "keyframe_picks"} on its picks STRING input, and sends its gallery as
// {"ui": {"remaster_candidates": [{"keyframe": k, "frames": [first, last], "auto": i, "pick": ..,
// "scores": [...], "source": {filename, subfolder, type} | null, "candidates": [{...}, ...]}, ...]}}
// (remaster/webui.py: candidates_ui).
import { app, addPanel, chain, EDITOR_OPTION, el, injectStyle, onWidgetChange, viewUrl, widget } from "./remaster_common.js";

const KNOWN = { RemasterSelectCandidates: "picks" };

/** "auto, 2, drop" -> ["auto", 2, "drop", "auto", ...] padded to n. */
export function parsePicks(text, n) {
  const out = [];
  if (String(text || "").trim())
    for (const raw of String(text).replace(/;/g, ",").split(",")) {
      const t = raw.trim().toLowerCase();
      if (/^\d+$/.test(t)) out.push(Number(t));
      else if (["drop", "d", "x", "none", "original"].includes(t)) out.push("drop");
      else out.push("auto");
    }
  while (out.length < n) out.push("auto");
  return out;
}

/** ["auto", 2, "drop", "auto"] -> "auto, 2, drop" (trailing autos left out; "" when all auto). */
export function dumpPicks(list) {
  const a = list.map((p) => (p === "drop" ? "drop" : typeof p === "number" ? String(p) : "auto"));
  while (a.length && a[a.length - 1] === "auto") a.pop();
  return a.join(", ");
}

function setupPicker(node, picksName) {
  injectStyle();
  const pw = widget(node, picksName);
  const gallery = el("div", { class: "rm-gallery" });
  const info = el("div", { class: "rm-info", text: "run the workflow to see the candidates of each keyframe" });
  const panel = el("div", { class: "rm-panel" }, gallery, info);
  addPanel(node, "remaster_keyframe_picker", panel, () => Math.max(160, Math.min(560, 36 + 100 * (node.remasterCandidates?.length || 1))));
  node.remasterCandidates = node.properties?.remaster_candidates || [];

  const picks = () => parsePicks(pw?.value, node.remasterCandidates.length);
  const setPicks = (p) => {
    if (!pw) return;
    pw.value = dumpPicks(p);
    node.setDirtyCanvas?.(true, true);
    render();
  };

  function render() {
    const p = picks();
    gallery.replaceChildren();
    node.remasterCandidates.forEach((kf, g) => {
      const choice = p[g];
      const dropped = choice === "drop";
      const thumbs = el("div", { class: "rm-thumbs" });
      if (kf.source) thumbs.append(el("img", { src: viewUrl(kf.source), class: "source", title: `keyframe ${kf.keyframe}: original` }));
      (kf.candidates || []).forEach((c, i) => {
        const score = kf.scores?.[i] != null ? ` · score ${Number(kf.scores[i]).toFixed(3)} (lower fits better)` : "";
        const img = el("img", {
          src: viewUrl(c), loading: "lazy", "data-group": String(g), "data-index": String(i),
          title: `keyframe ${kf.keyframe}, candidate ${i}${i === kf.auto ? " (automatic choice)" : ""}${score}`,
        });
        if (choice === i) img.classList.add("picked");
        else if (choice === "auto" && i === kf.auto) img.classList.add("auto");
        img.addEventListener("pointerdown", (e) => e.stopPropagation());
        img.addEventListener("click", (e) => {
          e.stopPropagation();
          const q = picks();
          q[g] = q[g] === i ? "auto" : i; // click again: back to automatic
          setPicks(q);
        });
        thumbs.append(img);
      });
      if (!kf.candidates?.length) thumbs.append(el("span", { class: "rm-info", text: "no mask on this keyframe" }));
      const dropBtn = el("button", {
        text: dropped ? "restore group" : "drop group",
        title: "drop: keep the original frames for this keyframe's group",
        "data-group": String(g),
        onclick: (e) => {
          e.stopPropagation();
          const q = picks();
          q[g] = dropped ? "auto" : "drop";
          setPicks(q);
        },
      });
      const span = kf.frames ? ` (frames ${kf.frames[0]}–${kf.frames[1]})` : "";
      const state = dropped ? "dropped" : choice !== "auto" ? `picked ${choice}` : `auto ${kf.auto ?? "–"}`;
      const head = el("div", { class: "rm-bar" }, el("span", { text: `keyframe ${kf.keyframe}${span}: ${state}` }), dropBtn);
      gallery.append(el("div", { class: `rm-kf${dropped ? " dropped" : ""}` }, head, thumbs));
    });
    const n = p.filter((x) => x !== "auto").length;
    info.textContent = node.remasterCandidates.length
      ? `${node.remasterCandidates.length} keyframes · ${n} manual choices · click a candidate to pick it, again for auto`
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
    const name =
      Object.keys(inputs).find((k) => inputs[k]?.[1]?.[EDITOR_OPTION] === "keyframe_picks") ||
      (inputs[KNOWN[nodeData.name]] ? KNOWN[nodeData.name] : undefined);
    if (!name) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      setupPicker(this, name);
    });
  },
});
