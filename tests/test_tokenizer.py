import open_clip
from transformers import CLIPTokenizer

from augbench.miniworld.tokenizer import write_clip_tokenizer


def test_offline_tokenizer_matches_openai_clip_ids(tmp_path):
    write_clip_tokenizer(tmp_path, model_max_length=16)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    reference = open_clip.get_tokenizer("ViT-B-32")
    for text in ["a photo of a seven", "Handwritten digit NINE, scanned!", "tench, Tinca tinca"]:
        ids = tokenizer(text).input_ids
        expected = reference([text])[0]
        assert ids == expected[: len(ids)].tolist()
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 16
