"""The main job: a feature-engineering, training and evaluation pipeline."""
