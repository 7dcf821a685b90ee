"""Small analytic models behind the findings (pure numpy, seconds)."""
