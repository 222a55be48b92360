"""Experiment configs (ml-collections). Each file's docstring starts with its command."""
