"""Motion capture from real footage: a video -> the SMPL motion of one person, and training clips from videos."""
