"""Layer 2, what sits between the tournament and the network: a job's model stack and its lifetime
(``runtime``), per-endpoint limits and stops (``endpoint``), retries and adaptive pressure (``resilience``),
the request cache (``cache``), fallback models (``fallback``), local model loading (``local_models``),
Ctrl+C handling (``interrupts``) and the progress line (``progress``). It may use ``hadron_hf.backends``.
"""
