"""Stand-in for ``comfy.latent_formats``: Wan2.2's 48 channels with a fixed, recognisable latent-to-RGB map."""


class Wan22:
    latent_channels = 48
    latent_rgb_factors = [[(c % 3 == k) / 16 for k in range(3)] for c in range(48)]
    latent_rgb_factors_bias = [0.0, 0.0, 0.0]
