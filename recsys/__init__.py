"""Core package shared by workers and exporters: data sets, features, models, training and metrics."""
