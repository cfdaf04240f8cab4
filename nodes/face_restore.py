"""Face Restore (Remaster): GFPGAN / CodeFormer on every face of the frame stream."""
from __future__ import annotations

from remaster.stages import face_restore as stage
from remaster.models.precision import PRECISIONS

from ._common import StreamStage, category, model_input, stream_inputs


class RemasterFaceRestore(StreamStage):
    DESCRIPTION = (
        "Restores every face in the video: finds faces (RetinaFace or YuNet), aligns each to the "
        "512x512 face template, restores it with GFPGAN v1.3/v1.4 or CodeFormer, and pastes it "
        "back with a soft edge. Landmarks are smoothed over time (restarting at scene cuts "
        "attached by the Scene Cuts node) so faces do not jitter. Frames without faces and "
        "everything outside the faces stay untouched. Works before or after upscaling."
    )
    CATEGORY = category("Enhance")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "model": model_input(stage.RESTORE_FOLDER, "Face restoration model (facerestore_models): "
                                                       "GFPGANv1.4, GFPGANv1.3 or CodeFormer."),
            "detector": model_input(stage.DETECT_FOLDER, "Face detector (facedetection): a RetinaFace .pth "
                                                         "(facexlib format) or a YuNet .onnx."),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                   "tooltip": "How much of the restored face replaces the original (0 = none)."}),
            "codeformer_fidelity": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                              "tooltip": "CodeFormer only: 0 = strongest restoration, 1 = closest to "
                                                         "the input face."}),
        }, optional={
            "min_face_size": ("INT", {"default": 32, "min": 0, "max": 4096,
                                      "tooltip": "Faces smaller than this (pixels, box side) are left alone."}),
            "smoothing": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 0.95, "step": 0.05,
                                    "tooltip": "Temporal smoothing of face landmarks: 0 = per-frame detection, higher "
                                               "= steadier faces. Fast motion is followed without lag."}),
            "detection_threshold": ("FLOAT", {"default": 0.6, "min": 0.05, "max": 1.0, "step": 0.05,
                                              "tooltip": "Minimum detector confidence for a face."}),
            "detect_cuts": ("BOOLEAN", {"default": False,
                                        "tooltip": "Find scene cuts if none are attached (once per chain, on the decoded "
                                                   "video: nothing upstream runs again)."}),
            "precision": (list(PRECISIONS), {"default": "auto",
                                             "tooltip": "auto: bf16 where fast (GPU, or CPU with AVX-512-BF16/AMX), else fp32."}),
        })

    def run(self, frames, model, detector, strength=1.0, codeformer_fidelity=0.5, min_face_size=32,
            smoothing=0.6, detection_threshold=0.6, detect_cuts=False, precision="auto"):
        out = stage.face_restore(
            frames, model, detector, strength=strength, codeformer_fidelity=codeformer_fidelity,
            min_face_size=min_face_size, smoothing=smoothing, detection_threshold=detection_threshold,
            detect_cuts=detect_cuts, precision=precision,
        )
        return (out,)


NODE_CLASS_MAPPINGS = {"RemasterFaceRestore": RemasterFaceRestore}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterFaceRestore": "Face Restore (Remaster)"}
