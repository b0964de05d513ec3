"""Custom socket types, declared once. Their names are part of saved workflows: never rename them."""

from comfy_api.latest import io

SMPLModel = io.Custom("COMOVI_SMPL_MODEL")  # comovi_core.body.smpl.BodyModel
SMPLMotion = io.Custom("COMOVI_SMPL_MOTION")  # comovi_core.body.motion_file.SMPLMotion
CoMoViModels = io.Custom(
    "COMOVI_MODELS"
)  # nodes.managed.ManagedCoMoVi: transformer, vae, text_encoder under ComfyUI model management
PoseKeypoint = io.Custom("POSE_KEYPOINT")  # OpenPose-style dicts from comfyui_controlnet_aux (DWPose / OpenPose)
StepCache = io.Custom("COMOVI_STEP_CACHE")  # comovi_core.model.step_cache.StepCacheConfig
