import sys

import numpy as np
import pandas as pd
import pytest

from augbench import knn_service


def _results(rows):
    return pd.DataFrame(rows, columns=["query", "label", "url", "similarity"])


def test_a_url_two_classes_find_goes_to_the_more_similar_one_once():
    results = _results(
        [
            (0, 0, "shared", 0.6),
            (0, 0, "a1", 0.5),
            (0, 0, "a2", 0.4),
            (1, 1, "shared", 0.9),
            (1, 1, "b1", 0.3),
        ]
    )
    chosen = knn_service.assign_results(results, candidates=[2, 2], shares=[2, 2])
    assert chosen[chosen.label == 0].url.tolist() == ["a1", "a2"]
    assert chosen[chosen.label == 1].url.tolist() == ["shared", "b1"]
    assert chosen[chosen.label == 1]["rank"].tolist() == [0, 1]
    assert chosen.attrs["short"] == []


def test_a_class_left_short_is_reported():
    results = _results([(0, 0, "a", 0.9), (1, 1, "a", 0.8), (1, 1, "b", 0.7)])
    chosen = knn_service.assign_results(results, candidates=[1, 3], shares=[1, 3])
    assert chosen.attrs["short"] == [1]


def test_each_image_query_brings_its_share_of_its_class():
    # Class 0 has two real images as queries, class 1 one; 3 and 2 candidates to find.
    labels = np.array([0, 0, 1])
    assert knn_service.query_shares([3, 2], labels) == [2, 2, 2]
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have a quota but no query"):
        knn_service.query_shares([3, 2, 1], labels)


class _Service:
    """Stands in for ClipClient in-process: class c's results are urls c-0, c-1, ... up to a limit."""

    def __init__(self, available):
        self.url = "http://127.0.0.1:1/knn-service"
        self.available = available
        self.num_images = 1
        self.asked = []

    def query(self, embedding_input):
        label = int(np.argmax(embedding_input))
        self.asked.append(self.num_images)
        count = min(self.num_images, self.available[label])
        return [{"url": f"{label}-{i}", "similarity": 1 - i / 100, "id": i} for i in range(count)]


def test_a_search_short_of_candidates_asks_for_more_results():
    service = _Service(available=[50, 50])
    inputs = [{"embedding_input": [1.0, 0.0]}, {"embedding_input": [0.0, 1.0]}]
    chosen = knn_service.retrieve_candidates(service, inputs, np.array([0, 1]), [8, 3], overfetch=1.0)
    assert chosen.groupby("label").size().tolist() == [8, 3]
    assert chosen[chosen.label == 0].url.tolist() == [f"0-{i}" for i in range(8)]
    assert service.asked == [8, 8]


def test_a_service_too_small_names_the_class():
    service = _Service(available=[50, 2])
    inputs = [{"embedding_input": [1.0, 0.0]}, {"embedding_input": [0.0, 1.0]}]
    with pytest.raises(ValueError, match=r"too few distinct images for class\(es\) \[1\] at 16 results"):
        knn_service.retrieve_candidates(service, inputs, np.array([0, 1]), [3, 3], overfetch=1.0, max_images=16)
    # It widened 3 -> 6 -> 12 -> 16 before giving up.
    assert sorted(set(service.asked)) == [3, 6, 12, 16]


def test_an_error_answer_of_the_service_is_reported():
    class Broken(_Service):
        def query(self, **inputs):
            return {"message": "Internal Server Error"}

    with pytest.raises(RuntimeError, match="Internal Server Error"):
        knn_service.ask(Broken([1]), [{"text": "x"}], np.array([0]))


def test_queries_are_class_prompts_images_or_their_embeddings():
    subset = pd.DataFrame({"path": ["r/0.png", "r/1.png", "r/2.png"], "label": [1, 0, 1]})
    inputs, labels = knn_service.query_inputs("text", ["cat", "dog"], "a photo of a {}", subset, None)
    assert inputs == [{"text": "a photo of a cat"}, {"text": "a photo of a dog"}]
    assert labels.tolist() == [0, 1]
    inputs, labels = knn_service.query_inputs("image", ["cat", "dog"], "{}", subset, None)
    assert inputs[2] == {"image": "r/2.png"} and labels.tolist() == [1, 0, 1]
    embeddings = np.eye(3, dtype=np.float32)
    inputs, labels = knn_service.query_inputs("image", ["cat", "dog"], "{}", subset, embeddings)
    assert inputs[1] == {"embedding_input": [0.0, 1.0, 0.0]}
    with pytest.raises(ValueError, match="3 query embeddings for 2 text queries"):
        knn_service.query_inputs("text", ["cat", "dog"], "{}", subset, embeddings)


def test_missing_clip_retrieval_says_where_it_lives(monkeypatch):
    monkeypatch.setitem(sys.modules, "clip_retrieval", None)
    monkeypatch.setitem(sys.modules, "clip_retrieval.clip_client", None)
    with pytest.raises(ModuleNotFoundError, match=r"clip-retrieval .*numpy<2.*make clip-venv.*envs/clip-retrieval"):
        knn_service.service_client(knn_service.Service("http://127.0.0.1:1", "index"), num_images=10)
