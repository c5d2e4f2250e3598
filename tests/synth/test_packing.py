import numpy as np
import pytest

from synth.packing import (
    adjacent_similarity,
    greedy_walk_order,
    order_corpus,
    pack_corpus,
    pack_sequences,
    shuffle_sequences,
)


def topics(n, clusters=20, dim=384, spread=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    label = rng.integers(0, clusters, n)
    x = centers[label] / np.sqrt(dim) + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), label


def doc_tokens(n, seed=0):
    return np.random.default_rng(seed).integers(20, 700, n)


def check_packing(sequences, tokens, seq_len, sep_tokens=1):
    """Asserts no sequence overflows and every token of every document is packed once."""
    pieces: dict[int, list[tuple[int, int]]] = {}
    for sequence in sequences:
        assert sequence
        assert sum(end - start + sep_tokens for _, start, end in sequence) <= seq_len
        for doc, start, end in sequence:
            pieces.setdefault(doc, []).append((start, end))
    assert sorted(pieces) == list(range(len(tokens)))
    for doc, spans in pieces.items():
        spans.sort()
        assert spans[0][0] == 0 and spans[-1][1] == tokens[doc]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert all(start < end for start, end in spans) or tokens[doc] == 0


def within_sequence_similarity(sequences, x):
    pairs = [(a[0], b[0]) for seq in sequences for a, b in zip(seq, seq[1:])]
    left, right = np.array(pairs).T
    return float(np.einsum("ij,ij->i", x[left], x[right]).mean())


def test_pack_sequences_policy_on_a_small_example():
    tokens = np.array([5, 3, 9, 2, 25, 4, 0])
    sequences = pack_sequences([0, 1, 2, 3, 4, 5, 6], tokens, seq_len=10, sep_tokens=1)
    assert sequences == [
        [(0, 0, 5), (1, 0, 3)],  # 6 + 4 = 10
        [(2, 0, 9)],  # doc 3 (2 + 1) does not fit the one token left
        [(3, 0, 2)],  # doc 4 is longer than a sequence: starts a new one
        [(4, 0, 9)],
        [(4, 9, 18)],
        [(4, 18, 25)],  # its 7 + 1 leave 2 tokens, too few for doc 5
        [(5, 0, 4), (6, 0, 0)],  # an empty document still gets its item
    ]
    check_packing(sequences, tokens, 10)


def test_long_document_tail_shares_its_sequence():
    sequences = pack_sequences([0, 1], np.array([12, 3]), seq_len=10, sep_tokens=1)
    assert sequences == [[(0, 0, 9)], [(0, 9, 12), (1, 0, 3)]]
    assert pack_sequences([0], np.array([9]), seq_len=10) == [[(0, 0, 9)]]
    assert pack_sequences([0], np.array([10]), seq_len=10) == [[(0, 0, 9)], [(0, 9, 10)]]
    assert pack_sequences([0], np.array([10]), seq_len=10, sep_tokens=0) == [[(0, 0, 10)]]


@pytest.mark.parametrize("seq_len, sep_tokens", [(64, 1), (100, 0), (37, 3)])
def test_pack_sequences_random_lengths_never_overflow(seq_len, sep_tokens):
    rng = np.random.default_rng(seq_len)
    tokens = rng.integers(0, 3 * seq_len, 500)
    order = rng.permutation(500).tolist()
    sequences = pack_sequences(order, tokens, seq_len=seq_len, sep_tokens=sep_tokens)
    check_packing(sequences, tokens, seq_len, sep_tokens)
    flattened = list(dict.fromkeys(d for seq in sequences for d, _, _ in seq))
    assert flattened == order


def test_pack_sequences_rejects_bad_settings():
    with pytest.raises(ValueError):
        pack_sequences([0], np.array([3]), seq_len=4, sep_tokens=4)
    with pytest.raises(ValueError):
        pack_sequences([0], np.array([-1]), seq_len=4)
    assert pack_sequences([], np.array([]), seq_len=4) == []


def test_shuffle_sequences_is_a_seeded_permutation():
    sequences = [[(i, 0, 1)] for i in range(50)]
    shuffled = shuffle_sequences(sequences, seed=4)
    assert sorted(shuffled) == sequences and shuffled != sequences
    assert shuffle_sequences(sequences, seed=4) == shuffled
    assert shuffle_sequences(sequences, seed=5) != shuffled


def test_adjacent_similarity_of_known_vectors():
    x = np.array([[1, 0], [0, 2], [3, 3], [-1, 0]], dtype=np.float32)
    assert adjacent_similarity([0, 1, 2, 3], x) == pytest.approx((0 + 2**-0.5 - 2**-0.5) / 3)
    assert adjacent_similarity([0, 2, 1], x, block=1) == pytest.approx(2**-0.5)
    assert adjacent_similarity([3], x) == 0.0


def test_greedy_walk_visits_every_document_once_deterministically():
    x, _ = topics(1500)
    walk = greedy_walk_order(x, seed=2)
    assert sorted(walk) == list(range(1500))
    assert greedy_walk_order(x, seed=2) == walk
    assert greedy_walk_order(x, seed=3) != walk
    random_order = np.random.default_rng(0).permutation(1500)
    assert adjacent_similarity(walk, x) > adjacent_similarity(random_order, x) + 0.2


def test_order_corpus_beats_random_and_greedy_walk():
    x, _ = topics(3000)
    tokens = doc_tokens(3000)
    order = order_corpus(x, tokens, max_cluster_tokens=4 * 2048, min_cluster_tokens=1024)
    assert sorted(order) == list(range(3000))
    ours = adjacent_similarity(order, x)
    random_order = adjacent_similarity(np.random.default_rng(0).permutation(3000), x)
    assert ours > random_order + 0.3
    assert ours >= adjacent_similarity(greedy_walk_order(x), x)


def test_pack_corpus_packs_similar_documents_together():
    x, _ = topics(3000)
    tokens = doc_tokens(3000)
    tokens[5] = 5000  # longer than a sequence: split
    sequences = pack_corpus(x, tokens, seq_len=2048)
    check_packing(sequences, tokens, 2048)
    assert sum(d == 5 for seq in sequences for d, _, _ in seq) == 3
    random_order = np.random.default_rng(0).permutation(3000)
    assert within_sequence_similarity(sequences, x) > adjacent_similarity(random_order, x) + 0.3
    assert pack_corpus(x, tokens, seq_len=2048) == sequences
    reshuffled = pack_corpus(x, tokens, seq_len=2048, seed=1)
    assert reshuffled != sequences
    assert sorted(map(tuple, reshuffled)) == sorted(map(tuple, sequences))


def test_pack_corpus_on_a_disconnected_knn_graph():
    x, label = topics(600, clusters=6, spread=0.05)
    tokens = doc_tokens(600)
    sequences = pack_corpus(x, tokens, k=3, seq_len=1024, max_cluster_tokens=4096, min_cluster_tokens=256)
    check_packing(sequences, tokens, 1024)
    mixed = sum(len({label[d] for d, _, _ in seq}) > 1 for seq in sequences)
    assert mixed <= 6  # only where one topic's last sequence meets the next topic


def test_pack_corpus_small_inputs():
    assert pack_corpus(np.zeros((0, 8)), np.zeros(0, dtype=int)) == []
    assert pack_corpus(np.ones((1, 8)), np.array([3])) == [[(0, 0, 3)]]
    with pytest.raises(ValueError):
        pack_corpus(np.ones((2, 8)), np.array([3]))
