"""Results: the run folder, the leaderboard, aggregation across seeds, ensembles, plots, the report, tracking."""
