"""First-party head plugins, installed as ``benchkit.heads``; importing registers them."""
