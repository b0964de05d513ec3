"""Retargeting between SMPL and other skeletons (Mixamo, UE5 Manny/Quinn, VRM humanoid, CMU).

Rest-pose alignment, bone-name maps, per-bone rotation offsets, root motion and scale, and clip options
(in place, on the ground, fps resampling).
"""
