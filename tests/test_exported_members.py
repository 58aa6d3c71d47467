import hadron_hf


def test_all_is_sorted_and_complete() -> None:
    assert hadron_hf.__all__ == sorted(hadron_hf.__all__)
    for name in hadron_hf.__all__:
        assert getattr(hadron_hf, name) is not None
    public = {n for n in vars(hadron_hf) if not n.startswith("_")} - {
        "backends", "borda", "cache", "chat", "columns", "config", "errors", "map", "prompts", "resilience",
        "runtime", "tournament", "testing", "cli", "views", "cards", "hub", "report", "progress", "ray", "eval",
        "migrate", "build", "sources", "demo", "mlx_export",
    }
    assert public == set(hadron_hf.__all__)
