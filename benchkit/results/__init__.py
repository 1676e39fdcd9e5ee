"""Results: the leaderboard, seed aggregation, plots, the HTML report and experiment tracking."""
