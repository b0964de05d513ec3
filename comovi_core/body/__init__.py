"""SMPL body: safe model loading, kinematics (via smplx), motion files, rotations, parts."""
