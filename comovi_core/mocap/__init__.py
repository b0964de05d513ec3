"""Motion in from mocap files.

BVH (CMU, Mixamo) and AMASS / SMPL-H ``.npz`` to a SMPL motion placed in front of a camera.
"""
