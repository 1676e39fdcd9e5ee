"""Models: the backbone and head contracts, weights, freezing, and their assembly into a grader."""
