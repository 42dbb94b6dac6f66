"""Start clip-retrieval's own kNN back end on loopback with a local open_clip model (tests/test_clip_service.py).

    .venv-clip/bin/python tests/clip_back.py --model resources/miniworld/models/clip \
        --indices indices.json --port 1234

``clip-retrieval back`` names its CLIP as ``open_clip:<architecture>/<checkpoint>`` and has no
``local-dir:`` form (clip-retrieval keeps open_clip below 3), so the model folder's
``open_clip_config.json`` is registered with open_clip under a name first. clip_back serves
on every address; here Flask is bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

NAME = "augbench-local"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="open_clip model folder (open_clip_config.json + weights)")
    parser.add_argument("--indices", required=True, help="clip-retrieval's indices_paths.json")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import flask
    import open_clip
    from clip_retrieval.clip_back import clip_back

    folder = Path(args.model).resolve()
    configs = Path(tempfile.mkdtemp())
    model_config = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    (configs / f"{NAME}.json").write_text(json.dumps(model_config))
    open_clip.add_model_config(configs)

    serve = flask.Flask.run
    flask.Flask.run = lambda app, host=None, port=None, **options: serve(app, "127.0.0.1", port, **options)
    clip_back(
        indices_paths=args.indices,
        port=args.port,
        clip_model=f"open_clip:{NAME}/{folder / 'open_clip_model.safetensors'}",
        use_jit=False,
        enable_mclip_option=False,
        columns_to_return=["url", "caption"],
        # Each would download a model or embeddings from the web at start.
        provide_safety_model=False,
        provide_violence_detector=False,
        provide_aesthetic_embeddings=False,
    )


if __name__ == "__main__":
    main()
