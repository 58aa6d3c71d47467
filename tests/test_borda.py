import pytest

from hadron_hf.core.borda import (
    HADRON_RULE,
    PAPER_RULE,
    borda_loser,
    borda_scores,
    borda_winner,
    parse_ranking,
    ranking_choices,
    winner_is_locked,
)
from hadron_hf.errors import RankingParseError


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("RANKING: X1 > X2 > X3", ("X1", "X2", "X3")),
        ("X3 is wrong about dates.\nX1 is thorough.\n\nRANKING: X1 > X2 > X3", ("X1", "X2", "X3")),
        ("**RANKING:** X2 > X3 > X1", ("X2", "X3", "X1")),
        ("Ranking: x3, x1, x2", ("X3", "X1", "X2")),
        ("RANKING: [X2] > [X1] > [X3]", ("X2", "X1", "X3")),
        ("RANKING: `X3` > `X2` > `X1`.", ("X3", "X2", "X1")),
        ("RANKING - X2; X1; X3", ("X2", "X1", "X3")),
        ("First guess RANKING: X1 > X2 > X3\nOn reflection:\nRANKING: X3 > X2 > X1", ("X3", "X2", "X1")),
        ("Final RANKING: X2 then X3 then X1", ("X2", "X3", "X1")),
        ("  ranking:X1>X3>X2  ", ("X1", "X3", "X2")),
    ],
    ids=["plain", "reason-first", "bold", "lower-commas", "brackets", "backticks", "dash-semicolons",
         "last-line-wins", "words", "no-spaces"],
)
def test_parse_ranking_reads_real_looking_replies(reply: str, expected: tuple[str, ...]) -> None:
    assert parse_ranking(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "X1 is best, then X2, then X3.",
        "RANKING: X1 > X2",
        "RANKING: X1 > X1 > X3",
        "RANKING: X11 > X2 > X3",
        "RANKING: A > B > AB",
        "RANKING:",
        "I refuse to rank these.",
    ],
    ids=["empty", "no-line", "missing-one", "duplicate", "label-prefix", "wrong-labels",
         "empty-line", "refusal"],
)
def test_parse_ranking_rejects_malformed(reply: str) -> None:
    with pytest.raises(RankingParseError):
        parse_ranking(reply)


def test_ranking_choices_are_all_permutations_and_parse() -> None:
    choices = ranking_choices()
    assert len(set(choices)) == 6
    assert {parse_ranking(c) for c in choices} == {
        ("X1", "X2", "X3"), ("X1", "X3", "X2"), ("X2", "X1", "X3"),
        ("X2", "X3", "X1"), ("X3", "X1", "X2"), ("X3", "X2", "X1"),
    }


def test_paper_borda_points_and_incumbent_tie() -> None:
    scores = borda_scores([("A", "B", "AB"), ("B", "A", "AB")], PAPER_RULE)
    assert scores == {"A": 5, "B": 5, "AB": 2}
    assert borda_winner(scores, PAPER_RULE) == "A"
    assert borda_loser(scores, PAPER_RULE) == "AB"


def test_paper_tie_between_b_and_ab_goes_to_b() -> None:
    scores = borda_scores([("B", "AB", "A"), ("AB", "B", "A")], PAPER_RULE)
    assert scores == {"A": 2, "B": 5, "AB": 5}
    assert borda_winner(scores, PAPER_RULE) == "B"


def test_hadron_borda_points_and_ab_before_b() -> None:
    scores = borda_scores([("B", "AB", "A"), ("AB", "B", "A")], HADRON_RULE)
    assert scores == {"A": 0, "B": 3, "AB": 3}
    assert borda_winner(scores, HADRON_RULE) == "AB"
    assert borda_loser(scores, HADRON_RULE) == "A"


def test_three_way_tie_goes_to_incumbent_in_both_variants() -> None:
    votes = [("A", "B", "AB"), ("B", "AB", "A"), ("AB", "A", "B")]
    for rule in (PAPER_RULE, HADRON_RULE):
        assert borda_winner(borda_scores(votes, rule), rule) == "A"


def test_no_votes_keeps_incumbent() -> None:
    assert borda_winner(borda_scores([], PAPER_RULE), PAPER_RULE) == "A"


@pytest.mark.parametrize(
    ("scores", "left", "locked"),
    [
        ({"A": 6, "B": 4, "AB": 2}, 0, True),
        ({"A": 6, "B": 5, "AB": 2}, 1, False),
        ({"A": 6, "B": 4, "AB": 2}, 1, True),
        ({"A": 9, "B": 5, "AB": 4}, 2, True),
        ({"A": 5, "B": 9, "AB": 4}, 2, False),
    ],
    ids=["no-votes-left", "one-left-can-flip", "one-left-tie-keeps-A", "safe-lead", "tie-rule-favours-A"],
)
def test_winner_is_locked(scores: dict[str, int], left: int, locked: bool) -> None:
    assert winner_is_locked(scores, left, PAPER_RULE) is locked
