"""What chapters print around their numbers."""
from transferlab.report import grid_edges


def test_grid_edges_counts_winners_at_each_end():
    text = grid_edges([0.03, 0.03, 0.1, 0.3, None], (0.3, 0.03, 0.1), "fine-tuning runs")
    assert text == ("The chosen learning rate is at an edge of its grid [0.03, 0.1, 0.3] in 3 of 4 fine-tuning runs "
                    "(2 at the lowest, 1 at the highest).")
    assert grid_edges([0.1, 0.1], (0.03, 0.1, 0.3), "seeds", "FT's learning rate").startswith(
        "FT's learning rate is at an edge of its grid [0.03, 0.1, 0.3] in 0 of 2 seeds")


def test_a_one_value_grid_is_said_to_be_fixed():
    assert grid_edges([0.1, 0.1], (0.1,), "seeds") == "The chosen learning rate is fixed in all 2 seeds: its grid has one value, 0.1."
