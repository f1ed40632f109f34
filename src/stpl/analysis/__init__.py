"""Analyses of adapted models: the paper's k-nearest-neighbour feature analysis, and plots."""
