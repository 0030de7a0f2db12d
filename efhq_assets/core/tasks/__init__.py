"""Per-task split builders (gan, eg3d, t2i, reenactment, verification) and their metrics."""
