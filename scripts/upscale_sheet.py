"""Contact sheets for docs/upscale.md (real clips, real weights from ../shared/models).

docs/img/upscale_sheet.png: per row a crop of a real frame: input shown with bicubic x4 |
realesr-general-x4v3 x4 | RealESRGAN_x4plus x4 (ours, bf16 where the CPU has it).
docs/img/face_detect_sheet.png: talking-head frames with the detected box and 5 landmarks
(RetinaFace and YuNet) and the 512x512 aligned crop that the face restorer receives.

    python scripts/upscale_sheet.py
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster import host  # noqa: E402
from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import face_restore as fr  # noqa: E402
from remaster.stages import upscale as up  # noqa: E402
from sheet import label, to_u8  # noqa: E402

SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))
OUT = ROOT / "docs" / "img"


def upscale_sheet() -> Path:
    models = SHARED / "models" / "realesrgan"
    crops = [  # clip, frame, y, x, size (input pixels)
        ("anime_480p_23976_audio.mp4", 60, 150, 250, 96),
        ("dog_720p30_audio.mp4", 0, 180, 560, 96),
        ("fullbody_720x1080_25_audio.mp4", 10, 120, 280, 96),
    ]
    descs = {n: up._spandrel_load({k: v.float() for k, v in up.registry.unwrap_state_dict(
        up.registry.load_state_dict(models / n)).items()}, n) for n in ("realesr-general-x4v3.pth", "RealESRGAN_x4plus.pth")}
    ups = {n: up.Upscaler(d, torch.device("cpu"), "auto") for n, d in descs.items()}
    rows = []
    for clip, idx, y, x, s in crops:
        f = open_video(SHARED / "clips" / clip).read(idx, idx + 1).frames[:, y : y + s, x : x + s].contiguous()
        bic = up.resize(f.permute(0, 3, 1, 2), s * 4, s * 4).permute(0, 2, 3, 1)
        cells = [label(to_u8(bic[0]), f"{clip.split('_')[0]} input, bicubic x4")]
        for n, u in ups.items():
            cells.append(label(to_u8(u(f)[0]), f"{n[:-4]} x4 ({str(u.dtype)[6:]})"))
        rows.append(np.concatenate(cells, 1))
    sheet = np.concatenate(rows, 0)
    path = OUT / "upscale_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def face_sheet() -> Path:
    host.set_dirs(models_dir=str(ROOT / "_sheet_models"))
    d = host.model_dirs(fr.DETECT_FOLDER)[0]
    d.mkdir(parents=True, exist_ok=True)
    for n in ("retinaface_mobilenet0.25.pth", "face_detection_yunet.onnx"):
        if not (d / n).exists():
            os.symlink(SHARED / "models" / "face" / n, d / n)
    dets = {"RetinaFace": fr.FaceDetector("retinaface_mobilenet0.25.pth", 0.6, 320),
            "YuNet": fr.FaceDetector("face_detection_yunet.onnx", 0.6, 512)}
    s = open_video(SHARED / "clips" / "talking_head_512_30_audio.mp4")
    rows = []
    for idx in (0, 150, 300, 447):
        f = s.read(idx, idx + 1).frames[0].numpy()
        cells = []
        for name, det in dets.items():
            faces = det(f)
            img = to_u8(torch.from_numpy(f))
            for face in faces:
                x1, y1, x2, y2 = face[:4].astype(int)
                cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), 2)
                for px, py in face[5:].reshape(5, 2):
                    cv2.circle(img, (int(px), int(py)), 4, (255, 0, 0), -1)
            cells.append(label(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA), f"frame {idx}: {name}"))
            if name == "RetinaFace" and len(faces):
                crop = cv2.warpAffine(f, fr.align_matrix(faces[0, 5:].reshape(5, 2)), (512, 512))
                crop = to_u8(torch.from_numpy(crop))
                for px, py in fr.TEMPLATE_512:
                    cv2.circle(crop, (int(px), int(py)), 5, (255, 255, 0), 1)
                aligned = label(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA), "aligned 512 crop")
        cells.append(aligned)
        rows.append(np.concatenate(cells, 1))
    sheet = np.concatenate(rows, 0)
    path = OUT / "face_detect_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for p in (face_sheet(), upscale_sheet()):
        print(p, p.stat().st_size // 1024, "KiB")
