"""The generic layer of fluid-vineyard: models, reconcilers, placement, operations, SDK, CLI."""
