"""The offline demo: the generated toy world, the toy VLP models and backbone, tiny real-class models."""
