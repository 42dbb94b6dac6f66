"""Retrieve candidates per class from a clip-retrieval kNN service (``clip-retrieval back``).

    python -m augbench.knn_service --url http://host:1234/knn-service --indice-name laion5B-L-14 \
        --subset subset.csv --classes classes.txt --out candidates.csv --factor 1.5 [--embeddings prompts.npy]

For users who host an index (LAION-5B, or their own built with ``clip-retrieval index``).
Each class is queried by its prompt text, or by the CLIP text embedding the workflow
computed (``--embeddings``); with ``--query image`` each real training image is a query
(its file, or its embedding). Every option the service takes is sent explicitly.

Results are URLs, not files: each class gets ``factor`` times its quota of candidates
(``augbench.quotas.candidate_quotas``) for ``augbench.download`` to fetch. A URL that
several classes retrieve goes to the most similar class that still has room, once.
A search that leaves a class short asks for twice as many results, up to ``--max-images``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

import numpy as np
import pandas as pd

from augbench.cli import start_logging
from augbench.files import read_classes, read_manifest, write_manifest
from augbench.prompts import class_prompts
from augbench.quotas import candidate_quotas, class_quotas

log = logging.getLogger(__name__)

MISSING = (
    "the clip_service retrieval backend needs the clip-retrieval package, which this Python ({python}) "
    "does not have. It pins numpy<2, so it lives apart from the workflow's environment: run "
    "`make clip-venv` and set the method's service.python: .venv-clip/bin/python, or run the "
    "workflow with --software-deployment-method conda (envs/clip-retrieval.yaml)"
)


def service_client(
    url: str,
    indice_name: str,
    modality: str,
    num_images: int,
    aesthetic_score: int,
    aesthetic_weight: float,
    use_safety_model: bool,
    use_violence_detector: bool,
    deduplicate: bool,
):
    """A ``ClipClient`` with every option set here, none left to the client's defaults."""
    try:
        from clip_retrieval.clip_client import ClipClient, Modality
    except ImportError as error:
        raise ModuleNotFoundError(MISSING.format(python=sys.executable)) from error
    return ClipClient(
        url=url,
        indice_name=indice_name,
        use_mclip=False,
        aesthetic_score=aesthetic_score,
        aesthetic_weight=aesthetic_weight,
        modality=Modality(modality),
        num_images=num_images,
        deduplicate=deduplicate,
        use_safety_model=use_safety_model,
        use_violence_detector=use_violence_detector,
    )


def query_shares(candidates: list[int], labels: np.ndarray) -> list[int]:
    """Results each query must bring: its class's candidates shared evenly among the class's queries."""
    counts = np.bincount(labels, minlength=len(candidates))[: len(candidates)]
    lacking = [c for c, want in enumerate(candidates) if want > 0 and counts[c] == 0]
    if lacking:
        raise ValueError(f"class(es) {lacking} have a quota but no query")
    return [math.ceil(candidates[label] / counts[label]) for label in labels]


def assign_results(results: pd.DataFrame, candidates: list[int], shares: list[int]) -> pd.DataFrame:
    """Pick (url, class) pairs best first: each URL once, ``candidates[c]`` per class, ``shares[q]`` per query.

    ``results`` has a row per result: ``query``, ``label``, ``url``, ``similarity`` (and
    whatever else the service returned). The picks come sorted by class, best first,
    with their ``rank`` in the class.
    """
    order = results.sort_values(["similarity", "query"], ascending=[False, True], kind="stable")
    room = list(candidates)
    query_room = list(shares)
    taken: set[str] = set()
    picked = []
    for index, query, label, url in zip(order.index, order["query"], order.label, order.url):
        if not url or url in taken or room[label] == 0 or query_room[query] == 0:
            continue
        taken.add(url)
        room[label] -= 1
        query_room[query] -= 1
        picked.append(index)
    chosen = order.loc[picked].sort_values(["label", "similarity"], ascending=[True, False], kind="stable")
    chosen = chosen.reset_index(drop=True)
    chosen["rank"] = chosen.groupby("label").cumcount()
    chosen.attrs["short"] = [label for label, left in enumerate(room) if left > 0]
    return chosen


def ask(client, query_inputs: list[dict], labels: np.ndarray) -> pd.DataFrame:
    """Send every query; one row per result. The client's ``num_images`` says how many each asks for."""
    frames = []
    for query, (inputs, label) in enumerate(zip(query_inputs, labels.tolist())):
        answer = client.query(**inputs)
        if not isinstance(answer, list):
            raise RuntimeError(f"the service at {client.url} answered query {query} (class {label}) with {answer!r}")
        if any("url" not in result for result in answer):
            raise ValueError(
                f"the service at {client.url} returns results without a url: start clip-retrieval back "
                "with url among its columns_to_return"
            )
        frame = pd.DataFrame(answer, columns=sorted({"url", "similarity", "id"} | {k for r in answer for k in r}))
        frames.append(frame.assign(query=query, label=label))
    return pd.concat(frames, ignore_index=True)


def retrieve_candidates(
    client,
    query_inputs: list[dict],
    labels: np.ndarray,
    candidates: list[int],
    overfetch: float = 2.0,
    max_images: int = 10000,
) -> pd.DataFrame:
    """Query until every class has its candidates (or ``max_images`` per query would not suffice)."""
    shares = query_shares(candidates, labels)
    client.num_images = min(max_images, max(1, math.ceil(max(shares) * overfetch)))
    while True:
        results = ask(client, query_inputs, labels)
        chosen = assign_results(results, candidates, shares)
        short = chosen.attrs["short"]
        if not short or client.num_images >= max_images:
            break
        client.num_images = min(max_images, client.num_images * 2)
        log.info("class(es) %s short of candidates; asking for %d results per query", short, client.num_images)
    if short:
        raise ValueError(
            f"the service returned too few distinct images for class(es) {short} at {client.num_images} "
            "results per query: raise service.max_images, lower download.factor or augment.per_class, "
            "or check the service's filters (use_safety_model, use_violence_detector, deduplicate)"
        )
    return chosen


def query_inputs(
    query: str, classes: list[str], template: str, subset: pd.DataFrame, embeddings: np.ndarray | None
) -> tuple[list[dict], np.ndarray]:
    """(ClipClient.query keyword arguments per query, class of each query)."""
    if query == "text":
        labels = np.arange(len(classes))
        if embeddings is None:
            return [{"text": prompt} for prompt in class_prompts(classes, template)], labels
    elif query == "image":
        labels = subset.label.to_numpy()
        if embeddings is None:
            return [{"image": str(path)} for path in subset.path], labels
    else:
        raise ValueError(f"query {query!r} is not 'text' or 'image'")
    if len(embeddings) != len(labels):
        raise ValueError(f"{len(embeddings)} query embeddings for {len(labels)} {query} queries")
    return [{"embedding_input": row.astype(float).tolist()} for row in embeddings], labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the service's kNN endpoint, http://host:port/knn-service")
    parser.add_argument("--indice-name", required=True, help="which of the service's indices to search")
    parser.add_argument("--subset", required=True, help="the real subset: the per-class quota, and image queries")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="manifest of the candidates (path and url are the URL)")
    parser.add_argument("--query", choices=["text", "image"], default="text", help="class prompts or real images")
    parser.add_argument("--template", default="a photo of a {}", help="class prompt of text queries")
    parser.add_argument("--embeddings", help=".npy of query embeddings (class prompts, or the subset's images)")
    parser.add_argument("--modality", choices=["image", "text"], default="image", help="search images or captions")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: as many as real)")
    parser.add_argument("--factor", type=float, default=1.5, help="candidates per class as a multiple of its quota")
    parser.add_argument("--overfetch", type=float, default=2.0, help="results asked per query over its share")
    parser.add_argument("--max-images", type=int, default=10000, help="most results asked per query")
    parser.add_argument("--aesthetic-score", type=int, default=9)
    parser.add_argument("--aesthetic-weight", type=float, default=0.0)
    flag = {"type": lambda text: text.lower() == "true", "default": True}
    parser.add_argument("--use-safety-model", **flag)
    parser.add_argument("--use-violence-detector", **flag)
    parser.add_argument("--deduplicate", **flag)
    args = parser.parse_args(argv)
    start_logging()
    classes = read_classes(args.classes)
    subset = read_manifest(args.subset)
    candidates = candidate_quotas(class_quotas(subset, len(classes), args.per_class), args.factor)
    embeddings = np.load(args.embeddings) if args.embeddings else None
    inputs, labels = query_inputs(args.query, classes, args.template, subset, embeddings)
    client = service_client(
        args.url,
        args.indice_name,
        args.modality,
        1,
        args.aesthetic_score,
        args.aesthetic_weight,
        args.use_safety_model,
        args.use_violence_detector,
        args.deduplicate,
    )
    chosen = retrieve_candidates(client, inputs, labels, candidates, args.overfetch, args.max_images)
    chosen = chosen.rename(columns={"similarity": "score", "id": "service_id"}).assign(path=lambda f: f.url)
    write_manifest(args.out, chosen)
    log.info("%d candidates for %d classes from %s into %s", len(chosen), len(classes), args.url, args.out)


if __name__ == "__main__":
    main()
