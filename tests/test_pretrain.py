import torch
from safetensors.torch import load_file

from augbench.miniworld.pretrain_diffusion import text_encoder_from_clip


def test_text_encoder_converted_from_clip_computes_the_same_features(tiny_clip):
    import open_clip

    folder = tiny_clip.removeprefix("local-dir:")
    clip, _, _ = open_clip.create_model_and_transforms(tiny_clip)
    encoder = text_encoder_from_clip(folder)
    tokens = open_clip.get_tokenizer(tiny_clip)(["a photo of a seven", "handwritten digit two"])
    with torch.no_grad():
        hidden = clip.token_embedding(tokens) + clip.positional_embedding
        hidden = clip.ln_final(clip.transformer(hidden, attn_mask=clip.attn_mask))
        ours = encoder(tokens)[0]
    torch.testing.assert_close(ours, hidden, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_mini_world_checkpoints_are_stored_small(tiny_clip, tiny_pipeline):
    from pathlib import Path

    clip_weights = load_file(str(Path(tiny_clip.removeprefix("local-dir:")) / "open_clip_model.safetensors"))
    assert {t.dtype for t in clip_weights.values()} == {torch.float16}
    assert not (Path(tiny_pipeline) / "tokenizer" / "tokenizer.json").exists()


def test_block_widths_given_as_the_rules_write_lists_shape_the_pipeline(miniworld, tiny_clip, tmp_path):
    """miniworld.diffusion.vae_channels and unet_channels reach the module as one flag per item."""
    import json

    from augbench.miniworld import pretrain_diffusion

    arguments = ["--pool", str(miniworld / "pool" / "manifest.csv"), "--clip", tiny_clip.removeprefix("local-dir:")]
    arguments += ["--out", str(tmp_path / "pipe"), "--vae-steps", "1", "--unet-steps", "1", "--batch-size", "4"]
    arguments += ["--vae-channels", "16", "--vae-channels", "32", "--unet-channels", "16", "--unet-channels", "48"]
    pretrain_diffusion.main(arguments + ["--threads", "1"])
    vae = json.loads((tmp_path / "pipe" / "vae" / "config.json").read_text())
    unet = json.loads((tmp_path / "pipe" / "unet" / "config.json").read_text())
    assert vae["block_out_channels"] == [16, 32] and unet["block_out_channels"] == [16, 48]


def test_the_models_refuse_the_sizes_the_config_check_refuses():
    """One rule for the sizes: building the models and checking a config give the same refusal."""
    import pytest

    from augbench.methods import SettingError
    from augbench.miniworld.pretrain_diffusion import build_components

    with pytest.raises(SettingError, match="pre-training needs a multiple of 8"):
        build_components(20, 16, vae_channels=(32, 32, 64), unet_channels=(32, 64))
    with pytest.raises(SettingError, match=r"channel widths \[40\] are not multiples of 16"):
        build_components(16, 16, unet_channels=(16, 40))
    vae, unet = build_components(16, 16, vae_channels=(16, 32), unet_channels=(16, 32))
    assert unet.config.norm_num_groups == vae.config.norm_num_groups == 16
