"""The sizes of the pre-trained CLIP and Stable-Diffusion-architecture models that must fit together.

Read by the study (a config's ``miniworld`` sizes are checked before any job runs) and by
the mini-world's pre-training modules that build the models, so the rule is written once.
"""

from __future__ import annotations

from augbench.methods import SettingError

# The mini-world CLIP's vision transformer cuts images into patches of this side.
PATCH_SIZE = 4


def halvings(vae_channels: list[int], unet_channels: list[int]) -> int:
    """Times the side is halved: by each VAE block but the last, then each UNet block but the last."""
    return len(vae_channels) - 1 + len(unet_channels) - 1


def norm_groups(vae_channels: list[int], unet_channels: list[int]) -> int:
    """GroupNorm groups of the VAE and UNet: the smallest width, at most 16."""
    return min(16, *vae_channels, *unet_channels)


def check_sizes(image_size: int, vae_channels: list[int], unet_channels: list[int]) -> None:
    """The image side must split into CLIP's patches and survive every halving, and every width
    must split into the normalisation's groups (keys relative to ``miniworld``)."""
    times = halvings(vae_channels, unet_channels)
    multiple = max(PATCH_SIZE, 2**times)
    if image_size % multiple:
        raise SettingError(
            "image_size",
            f"pre-training needs a multiple of {multiple} (CLIP's {PATCH_SIZE}-pixel patches; the VAE's and the "
            f"UNet's blocks halve the side {times} times), not {image_size}",
        )
    groups = norm_groups(vae_channels, unet_channels)
    uneven = [width for width in [*vae_channels, *unet_channels] if width % groups]
    if uneven:
        raise SettingError(
            "diffusion",
            f"channel widths {uneven} are not multiples of {groups}, "
            "the group size of the models' normalisation (the smallest width, at most 16)",
        )
