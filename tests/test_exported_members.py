import pkgutil

import hadron_hf


def test_all_is_sorted_and_complete() -> None:
    assert hadron_hf.__all__ == sorted(hadron_hf.__all__)
    for name in hadron_hf.__all__:
        assert getattr(hadron_hf, name) is not None
    # Importing a submodule makes it an attribute of the package; those are not re-exports.
    submodules = {m.name for m in pkgutil.iter_modules(hadron_hf.__path__)}
    public = {n for n in vars(hadron_hf) if not n.startswith("_")} - submodules
    assert public == set(hadron_hf.__all__)
