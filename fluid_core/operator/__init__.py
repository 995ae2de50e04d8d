"""The kopf operator: thin handlers over the reconcilers (``fluidv operator``)."""
