"""Character error rate, computed in the tests themselves (not by the code under test)."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance by the textbook dynamic programme."""
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Edits per reference character."""
    return edit_distance(reference, hypothesis) / max(len(reference), 1)


def cer_words(reference: str, hypothesis: str) -> float:
    """:func:`cer` with runs of whitespace (line breaks included) counted as one space."""
    return cer(" ".join(reference.split()), " ".join(hypothesis.split()))
