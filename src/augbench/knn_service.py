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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from augbench.cli import add_settings, run, setting, settings_from, start_logging
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


@dataclass
class Service:
    """The kNN service and every option a query sends it (a retrieval method's ``service`` entry)."""

    url: str = setting(help="the service's kNN endpoint, http://host:port/knn-service", config="methods.*.service.url")
    indice_name: str = setting(
        "laion5B-L-14", help="which of the service's indices to search", config="methods.*.service.indice_name"
    )
    # Not methods.*.index itself: the workflow sends index "caption" as the text modality.
    modality: str = setting("image", help="search images or captions", choices=("image", "text"))
    aesthetic_score: int = setting(
        9, help="aesthetic rating whose embedding the service may add", config="methods.*.service.aesthetic_score"
    )
    aesthetic_weight: float = setting(
        0.0, help="weight of that aesthetic embedding", config="methods.*.service.aesthetic_weight"
    )
    use_safety_model: bool = setting(
        True, help="drop results the NSFW model flags", config="methods.*.service.use_safety_model"
    )
    use_violence_detector: bool = setting(
        True, help="drop results the violence detector flags", config="methods.*.service.use_violence_detector"
    )
    deduplicate: bool = setting(
        True, help="drop near-duplicate results of a query", config="methods.*.service.deduplicate"
    )
    max_images: int = setting(10000, help="most results asked per query", config="methods.*.service.max_images")


@dataclass
class Candidates:
    """What is asked of the service for each class (a retrieval method's entry and the class prompt)."""

    query: str = setting(
        "text", help="class prompts or real images", choices=("text", "image"), config="methods.*.query"
    )
    template: str = setting("a photo of a {}", help="class prompt of text queries", config="prompt_template")
    per_class: int | None = setting(None, help="images per class (None: as many as real)", config="methods.*.per_class")
    factor: float = setting(
        1.5, help="candidates per class as a multiple of its quota", config="methods.*.download.factor"
    )
    overfetch: float = setting(2.0, help="results asked per query over its share", config="methods.*.overfetch")


def service_client(service: Service, num_images: int = 1):
    """A ``ClipClient`` with every option set here, none left to the client's defaults."""
    try:
        from clip_retrieval.clip_client import ClipClient, Modality
    except ImportError as error:
        raise ModuleNotFoundError(MISSING.format(python=sys.executable)) from error
    return ClipClient(
        url=service.url,
        indice_name=service.indice_name,
        use_mclip=False,
        aesthetic_score=service.aesthetic_score,
        aesthetic_weight=service.aesthetic_weight,
        modality=Modality(service.modality),
        num_images=num_images,
        deduplicate=service.deduplicate,
        use_safety_model=service.use_safety_model,
        use_violence_detector=service.use_violence_detector,
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
    overfetch: float = Candidates.overfetch,
    max_images: int = Service.max_images,
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


def query_service(
    subset_path: str,
    classes_path: str,
    out: str,
    service: Service,
    asked: Candidates | None = None,
    embeddings_path: str | None = None,
) -> pd.DataFrame:
    """Each class's candidates from the service, best first; write their manifest and return it."""
    asked = asked or Candidates()
    classes = read_classes(classes_path)
    subset = read_manifest(subset_path)
    candidates = candidate_quotas(class_quotas(subset, len(classes), asked.per_class), asked.factor)
    embeddings = np.load(embeddings_path) if embeddings_path else None
    inputs, labels = query_inputs(asked.query, classes, asked.template, subset, embeddings)
    client = service_client(service)
    chosen = retrieve_candidates(client, inputs, labels, candidates, asked.overfetch, service.max_images)
    chosen = chosen.rename(columns={"similarity": "score", "id": "service_id"}).assign(path=lambda f: f.url)
    write_manifest(out, chosen)
    log.info("%d candidates for %d classes from %s into %s", len(chosen), len(classes), service.url, out)
    return chosen


def main(argv: list[str] | None = None) -> None:
    # The settings' defaults live in Service and Candidates: an option left out takes it (settings_from).
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", required=True, help="the real subset: the per-class quota, and image queries")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="manifest of the candidates (path and url are the URL)")
    parser.add_argument("--embeddings", help=".npy of query embeddings (class prompts, or the subset's images)")
    add_settings(parser, Service)
    add_settings(parser, Candidates)
    args = parser.parse_args(argv)
    start_logging()
    service, asked = settings_from(args, Service), settings_from(args, Candidates)
    query_service(args.subset, args.classes, args.out, service, asked, args.embeddings)


if __name__ == "__main__":
    run(main)
