// Replace Background's picture input: an upload button without the frontend's image preview.
// The frontend previews an image-upload combo's value by loading it from /view, which for the
// "(none)" choice is a request for a file that does not exist (a 404 in the console on every
// load). This extension takes the node's combo out of the frontend's image-upload handling and
// adds the same "upload" button itself (same name and saved value, so workflows keep their
// widget order); a chosen picture is still uploaded to the input folder and selected.
import { app, api, widget } from "./remaster_common.js";

const NODE = "RemasterReplaceBackground";
const INPUT = "image";

async function uploadPicture(node, file) {
  const body = new FormData();
  body.append("image", file);
  const r = await api.fetchApi("/upload/image", { method: "POST", body });
  if (r.status !== 200) throw new Error(`upload failed: ${r.status} ${r.statusText}`);
  const data = await r.json();
  const name = data.subfolder ? `${data.subfolder}/${data.name}` : data.name;
  const w = widget(node, INPUT);
  if (!w) return;
  if (!w.options.values.includes(name)) w.options.values.push(name);
  w.value = name;
  w.callback?.(name);
  node.graph?.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "Remaster.BackgroundPicture",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE) return;
    const required = nodeData.input?.required ?? {};
    const spec = required[INPUT];
    if (spec && spec[1]) spec[1] = { ...spec[1], image_upload: false };
    delete required.upload; // added by the frontend's own upload extension, which ran first
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = created?.apply(this, arguments);
      if (!widget(this, "upload")) {
        const input = document.createElement("input");
        Object.assign(input, { type: "file", accept: "image/png,image/jpeg,image/webp,image/bmp,image/tiff" });
        input.style.display = "none";
        input.onchange = () => {
          if (input.files?.length) uploadPicture(this, input.files[0]).catch((e) => console.warn("Remaster:", e.message));
        };
        document.body.append(input);
        const b = this.addWidget("button", "upload", "image", () => input.click(), { serialize: false });
        b.label = "choose background picture to upload";
        const removed = this.onRemoved;
        this.onRemoved = function () {
          input.remove();
          return removed?.apply(this, arguments);
        };
      }
      return r;
    };
  },
});
