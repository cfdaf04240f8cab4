// Video previews: Load Video plays its file (looping the start/end range, with size, fps,
// duration, audio and what the stream will be), Save Video plays its result, with a before/after
// wipe against the source Load Video when one feeds it. Videos stream from ComfyUI's /view
// (the browser fetches ranges; nothing loads the whole file).
import {
  app, addPanel, chain, el, fmtTime, getJSON, injectStyle, inputEntry, loadParams, LOAD_VIDEO, onWidgetChange,
  SAVE_VIDEO, upstreamLoadVideo, viewUrl, widget,
} from "./remaster_common.js";

const VIDEO_EXT = /\.(mp4|m4v|mov|webm|mkv|ogv)$/i;

/** A player: one video, or two (before under a clip, after) with a wipe. */
function makePlayer() {
  const after = el("video", { playsinline: "", loop: "", muted: "", preload: "metadata" });
  const before = el("video", { playsinline: "", muted: "", preload: "metadata", style: "display:none" });
  after.muted = true;
  before.muted = true;
  const line = el("div", { class: "rm-wipe-line", style: "display:none" });
  const tagB = el("div", { class: "rm-tag", style: "left:4px;display:none", text: "before" });
  const tagA = el("div", { class: "rm-tag", style: "right:4px;display:none", text: "after" });
  const stage = el("div", { class: "rm-stage" }, after, before, line, tagB, tagA);
  const playBtn = el("button", { text: "❚❚", title: "play / pause" });
  const soundBtn = el("button", { text: "sound", title: "sound on / off" });
  const seek = el("input", { type: "range", min: "0", max: "1000", value: "0", title: "position" });
  const time = el("span", { class: "rm-info", text: "" });
  const wipeBtn = el("button", { text: "compare", title: "before/after wipe against the source video" });
  const bar = el("div", { class: "rm-bar" }, playBtn, soundBtn, seek, time, wipeBtn);
  const state = { range: [0, Infinity], wipe: false, pos: 0.5, offset: 0, hasBefore: false };

  const rangeEnd = () => Math.min(state.range[1], after.duration || Infinity);
  const setWipe = (x) => {
    state.pos = Math.min(1, Math.max(0, x));
    // show the before video left of the line, the after video right of it
    before.style.clipPath = `inset(0 ${(100 * (1 - state.pos)).toFixed(2)}% 0 0)`;
    line.style.left = `calc(${(100 * state.pos).toFixed(2)}% - 1px)`;
  };
  const showWipe = (on) => {
    state.wipe = on && state.hasBefore;
    for (const e of [before, line, tagB, tagA]) e.style.display = state.wipe ? "" : "none";
    wipeBtn.classList.toggle("on", state.wipe);
    if (state.wipe) {
      setWipe(state.pos);
      syncBefore(true);
      if (!after.paused) before.play().catch(() => {});
    } else before.pause();
  };
  const syncBefore = (force) => {
    if (!state.wipe) return;
    const t = after.currentTime + state.offset;
    if (force || Math.abs(before.currentTime - t) > 0.12) before.currentTime = t;
  };

  after.addEventListener("timeupdate", () => {
    const [a] = state.range;
    const b = rangeEnd();
    if (after.currentTime < a - 0.05 || after.currentTime >= b) {
      after.currentTime = a;
      syncBefore(true);
    } else syncBefore(false);
    const span = Math.max(1e-3, b - a);
    seek.value = String(Math.round((1000 * (after.currentTime - a)) / span));
    time.textContent = `${fmtTime(after.currentTime - a)} / ${fmtTime(span)}`;
  });
  after.addEventListener("loadedmetadata", () => {
    if (after.currentTime < state.range[0]) after.currentTime = state.range[0];
  });
  after.addEventListener("play", () => {
    playBtn.textContent = "❚❚";
    if (state.wipe) before.play().catch(() => {});
  });
  after.addEventListener("pause", () => {
    playBtn.textContent = "▶";
    before.pause();
  });
  playBtn.addEventListener("click", () => (after.paused ? after.play().catch(() => {}) : after.pause()));
  soundBtn.addEventListener("click", () => {
    after.muted = !after.muted;
    soundBtn.textContent = after.muted ? "sound" : "mute";
  });
  seek.addEventListener("input", () => {
    const a = state.range[0];
    after.currentTime = a + (Number(seek.value) / 1000) * Math.max(1e-3, rangeEnd() - a);
    syncBefore(true);
  });
  wipeBtn.addEventListener("click", () => showWipe(!state.wipe));
  stage.addEventListener("pointermove", (e) => {
    if (!state.wipe) return;
    const r = stage.getBoundingClientRect();
    setWipe((e.clientX - r.left) / Math.max(1, r.width));
  });
  wipeBtn.style.display = "none";

  return {
    element: el("div", { class: "rm-panel" }, stage, bar),
    video: after,
    before,
    setSource(url, range = [0, Infinity]) {
      state.range = range;
      if (after.dataset.src !== url) {
        after.dataset.src = url;
        after.src = url;
      } else if (after.currentTime < range[0] || after.currentTime > range[1]) after.currentTime = range[0];
      after.play().catch(() => {});
    },
    setBefore(url, offset = 0) {
      state.hasBefore = !!url;
      state.offset = offset;
      wipeBtn.style.display = url ? "" : "none";
      if (url && before.dataset.src !== url) {
        before.dataset.src = url;
        before.src = url;
      }
      if (!url) showWipe(false);
    },
    showWipe,
    setWipe,
  };
}

function describe(info) {
  const s = info.source;
  const t = info.stream;
  const audio = s.audio ? `audio ${s.audio.codec} ${s.audio.sample_rate / 1000} kHz ${s.audio.channels} ch` : "no audio";
  const fps = (x) => (Math.round(x * 1000) / 1000).toString();
  return (
    `file   ${s.width}×${s.height} · ${fps(s.fps)} fps${s.vfr ? " (VFR)" : ""} · ${s.frame_count} fr · ` +
    `${fmtTime(s.duration)} · ${audio}\n` +
    (s.colour ? `colour ${s.colour}\n` : "") +
    (s.made_by ? `made by ${s.made_by}\n` : "") +
    `stream ${t.width}×${t.height} · ${fps(t.fps)} fps · ${t.frame_count} fr · ${fmtTime(t.duration)}` +
    ` (${fmtTime(t.start_time)}–${fmtTime(t.end_time)}${t.every_nth > 1 ? `, 1 in ${t.every_nth} frames` : ""})`
  );
}

function setupLoadVideo(node) {
  injectStyle();
  // the frontend's own upload preview would show a second copy of the file: drop it, ours replaces it
  const origAdd = node.addDOMWidget;
  node.addDOMWidget = function (name, ...rest) {
    const w = origAdd.call(this, name, ...rest);
    if (name === "video-preview") {
      queueMicrotask(() => {
        const i = this.widgets.indexOf(w);
        if (i >= 0) this.widgets.splice(i, 1);
        w.onRemove?.();
        w.element?.remove?.();
      });
    }
    return w;
  };
  const player = makePlayer();
  const info = el("div", { class: "rm-info", text: "" });
  player.element.append(info);
  const w = addPanel(node, "remaster_preview", player.element, () => Math.max(200, node.size[0] * 0.6) + 84);
  node.remasterPlayer = player;
  let seq = 0;
  const refresh = async () => {
    const my = ++seq;
    const value = widget(node, "video")?.value;
    if (!value) {
      info.textContent = "no video chosen";
      return;
    }
    const q = loadParams(node);
    const start = Number(q.start_time) || 0;
    const end = Number(q.end_time) || Infinity;
    player.setSource(viewUrl(inputEntry(value)), [start, end > start ? end : Infinity]);
    try {
      const data = await getJSON("/remaster/video_info", q);
      if (my !== seq) return;
      info.classList.remove("rm-err");
      info.textContent = describe(data);
      node.remasterInfo = data;
      player.setSource(viewUrl(inputEntry(value)), [data.stream.start_time, data.stream.end_time]);
    } catch (e) {
      if (my !== seq) return;
      info.classList.add("rm-err");
      info.textContent = String(e.message || e);
    }
  };
  let timer;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  for (const name of ["video", "start_time", "end_time", "every_nth", "resize", "max_side", "width", "height", "force_fps"])
    onWidgetChange(widget(node, name), later);
  chain(node, "onConfigure", later); // a loaded workflow sets widget values without callbacks
  later();
  return w;
}

function setupSaveVideo(node) {
  injectStyle();
  const player = makePlayer();
  const info = el("div", { class: "rm-info", text: "run the workflow to see the result here" });
  player.element.append(info);
  addPanel(node, "remaster_result", player.element, () => Math.max(200, node.size[0] * 0.6) + 84);
  node.remasterPlayer = player;
  const show = (entry) => {
    if (!entry) return;
    if (!VIDEO_EXT.test(entry.filename) || !["output", "temp", "input"].includes(entry.type)) {
      info.textContent = `saved ${entry.subfolder ? entry.subfolder + "/" : ""}${entry.filename} (no browser preview for this format)`;
      return;
    }
    player.setSource(viewUrl(entry));
    info.textContent = `${entry.subfolder ? entry.subfolder + "/" : ""}${entry.filename}`;
    const src = upstreamLoadVideo(node);
    const value = src && widget(src, "video")?.value;
    if (value) {
      const q = loadParams(src);
      player.setBefore(viewUrl(inputEntry(value)), Number(q.start_time) || 0);
    } else player.setBefore(null);
  };
  chain(node, "onExecuted", (output) => {
    const entry = output?.videos?.[0];
    node.properties = node.properties || {};
    node.properties.remaster_last_video = entry;
    show(entry);
  });
  chain(node, "onConfigure", () => show(node.properties?.remaster_last_video));
}

app.registerExtension({
  name: "Remaster.VideoPreview",
  nodeCreated(node) {
    const cls = node.comfyClass || node.type;
    if (cls === LOAD_VIDEO) setupLoadVideo(node);
    else if (cls === SAVE_VIDEO) setupSaveVideo(node);
  },
});
