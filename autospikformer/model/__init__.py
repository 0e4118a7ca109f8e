"""The models: a standalone Spikformer (``spikformer``) and its weight-entangled supernet (``supernet``)."""
