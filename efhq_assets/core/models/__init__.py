"""Model interfaces, backends and the weights registry."""
