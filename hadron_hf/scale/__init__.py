"""Layer 3, scale-out: refining on a Ray Data actor pool (``ray_engine``) with every endpoint's rate limits
shared through one limiter actor (``cluster_limiter``). Needs the ``[ray]`` extra."""
