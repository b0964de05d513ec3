"""Retargeting between SMPL and other skeletons (Mixamo, UE5 Manny/Quinn, VRM humanoid, CMU).

``skeletons``: each skeleton's bones, hierarchy, which SMPL joint drives which bone, in-between bones and rest pose.
``animation``: ``SkeletonAnimation``, the skeleton-plus-animation the BVH and glTF writers take and BVH files read
into. ``mapping``: rest-pose alignment, root motion and scale, SMPL world motion to a skeleton and back
(``to_skeleton``, ``from_skeleton``). The clip options (in place, on the ground, fps) are ``body.world``'s; the
export applies them before retargeting. docs/export.md tells the choices.
"""
