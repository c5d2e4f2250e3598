"""Planning synthetic long sequences: budgets, uses, determinism, greedy fill."""

import random
from collections import Counter

import pytest

from synth.long_sequences import Use, pass_order, plan_sequences


def random_costs(seed, n=300, low=130, high=2400):
    rng = random.Random(seed)
    return {f"s{i:04d}": rng.randint(low, high) for i in range(n)}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("repeats", [1, 3])
def test_no_sequence_exceeds_the_budget_and_each_sample_is_used_repeats_times(seed, repeats):
    costs = random_costs(seed)
    costs["exact"] = 8192  # a sample exactly the budget fills a sequence of its own
    sequences = plan_sequences(costs, max_tokens=8192, seed=seed, repeats=repeats)
    assert all(sum(costs[use.key] for use in sequence) <= 8192 for sequence in sequences)
    uses = Counter(use.key for sequence in sequences for use in sequence)
    assert uses == {key: repeats for key in costs}
    for sequence in sequences:
        assert len({use.key for use in sequence}) == len(sequence), "a sample twice in one sequence"
        assert len({use.use for use in sequence}) == 1, "a sequence spans two passes"
    assert [use.use for sequence in sequences for use in sequence if use.key == "exact"] == list(range(repeats))


def test_greedy_fill_a_sequence_ends_only_where_the_next_sample_would_not_fit():
    costs = random_costs(5)
    sequences = plan_sequences(costs, max_tokens=10_000, seed=5, repeats=2)
    for sequence, following in zip(sequences, sequences[1:]):
        if sequence[0].use == following[0].use:  # the last sequence of a pass may be short
            assert sum(costs[u.key] for u in sequence) + costs[following[0].key] > 10_000
    assert sum(len(s) for s in sequences) == 2 * len(costs)


def test_the_plan_depends_on_the_seed_only_not_on_the_order_the_samples_arrive_in():
    costs = random_costs(3)
    shuffled = dict(random.Random(9).sample(sorted(costs.items()), len(costs)))
    plan = plan_sequences(costs, 8192, seed=4, repeats=2)
    assert plan_sequences(shuffled, 8192, seed=4, repeats=2) == plan
    assert plan_sequences(costs, 8192, seed=5, repeats=2) != plan


def test_each_pass_has_its_own_order():
    keys = sorted(random_costs(0))
    assert sorted(pass_order(keys, 7, 0)) == keys
    assert pass_order(keys, 7, 0) != pass_order(keys, 7, 1)
    assert pass_order(keys, 7, 1) == pass_order(list(keys), 7, 1)


def test_small_sets_fit_in_one_sequence_per_pass():
    plan = plan_sequences({"a": 10, "b": 20, "c": 30}, max_tokens=100, seed=0, repeats=2)
    assert len(plan) == 2
    assert {u.key for u in plan[0]} == {"a", "b", "c"} and plan[1][0] == Use(plan[1][0].key, 1)


def test_a_sample_over_the_budget_or_bad_settings_are_refused():
    with pytest.raises(ValueError, match="1 samples cost more than 100 tokens, e.g. 'big'"):
        plan_sequences({"a": 10, "big": 101}, max_tokens=100)
    with pytest.raises(ValueError, match="positive"):
        plan_sequences({"a": 10}, max_tokens=100, repeats=0)
    with pytest.raises(ValueError, match="negative"):
        plan_sequences({"a": -1}, max_tokens=100)
    assert plan_sequences({}, max_tokens=100) == []
