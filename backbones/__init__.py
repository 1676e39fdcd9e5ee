"""First-party backbone plugins, installed as ``benchkit.backbones``; importing registers them."""
