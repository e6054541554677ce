"""docs/selection.md's generated tables match the code (regenerate with
``python -m controller.services.selection_doc --write``)."""

from __future__ import annotations

from controller.services import selection_doc


def test_doc_tables_match_the_code() -> None:
    text = selection_doc.DOC.read_text()
    now = selection_doc.current(text)
    for name, body in selection_doc.generated().items():
        assert now[name] == body, f"docs/selection.md section {name} is stale"


def test_every_real_profile_and_catalog_model_is_in_the_pick_table() -> None:
    from controller.adapters.data_files import load_catalog, load_profiles

    table = selection_doc.default_picks()
    for p in load_profiles().values():
        if p.kind == "device":
            assert f"| {p.name} |" in table
    for m in load_catalog().values():
        if not m.builder:
            assert f"**{m.name}**" in table
