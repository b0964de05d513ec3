"""Pose-condition renders of any SMPL motion and camera for other video models.

A COCO-18 / DWPose-style skeleton video, depth, surface normals and the plain mesh.
"""
