"""Loading plugins: dotted paths, entry points, and the errors that name the plugin."""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path

import pytest

from cqrs_flow.plugins import (
    ENTRY_POINT_GROUP,
    Event,
    GatewayPlugin,
    MemoryReadModel,
    PluginError,
    ProjectionPlugin,
    ReaderPlugin,
    load_plugin_class,
)
from cqrs_flow.topology import load_topology
from cqrs_flow.topology.model import PluginRef

REPO = Path(__file__).resolve().parents[2]


def test_a_dotted_path_is_imported_from_the_plugin_path(shipped):
    cls = load_plugin_class(
        PluginRef("plugins.contacts.ReverseName"), shipped.nodes["reader"], shipped
    )
    assert (
        issubclass(cls, ReaderPlugin) and cls.serves("ReverseName") and not cls.serves("GetContact")
    )
    assert not cls.serves("start")  # the base class's own methods are no RPCs


def test_an_entry_point_is_found_by_name(shipped, monkeypatch):
    point = importlib.metadata.EntryPoint(
        "name-rules", "plugins.contacts:NameRules", ENTRY_POINT_GROUP
    )
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [point] if kw.get("group") == ENTRY_POINT_GROUP else real(**kw),
    )
    cls = load_plugin_class(PluginRef("name-rules"), shipped.nodes["gateway"], shipped)
    assert issubclass(cls, GatewayPlugin) and cls.__name__ == "NameRules"


@pytest.mark.parametrize(
    "use, node, message",
    [
        ("no-such-entry-point", "gateway", "neither a dotted path nor an installed entry point"),
        ("plugins.nowhere.Thing", "gateway", "cannot be imported: ModuleNotFoundError"),
        ("plugins.contacts.Missing", "gateway", "module plugins.contacts has no 'Missing'"),
        ("plugins.contacts.find_field", "gateway", "is not a cqrs_flow plugin class"),
        (
            "plugins.contacts.NameRules",
            "reader",
            "is a gateway plugin; a reader node takes ReaderPlugin",
        ),
    ],
)
def test_errors_name_the_plugin(shipped, use, node, message):
    with pytest.raises(PluginError, match=message) as exc:
        load_plugin_class(PluginRef(use), shipped.nodes[node], shipped)
    assert f"'{use}'" in str(exc.value)


# -- projection plugins -----------------------------------------------------------------------


class Counting(ProjectionPlugin):
    """Counts inserts of books, and every change of authors."""

    async def on_Book_insert(self, event, model):
        row = await model.get("books") or {"count": 0}
        row["count"] += 1
        model.put("books", row)

    async def on_Author(self, event, model):
        model.put(event.key, {"op": event.op})

    async def on_Author_delete(self, event, model):
        model.delete(event.key)

    def not_a_handler(self):
        """Methods not named on_... are the plugin's own."""


def test_a_projection_plugin_has_a_handler_per_entity_and_kind_of_change():
    assert Counting.handlers() == {
        ("Book", "insert"): "on_Book_insert",
        ("Author", None): "on_Author",
        ("Author", "delete"): "on_Author_delete",
    }
    assert Counting.entities() == ["Author", "Book"]


def test_handle_runs_the_most_precise_handler_and_tells_when_there_is_none():
    async def scenario():
        plugin, model = Counting(), MemoryReadModel()
        assert await plugin.handle(Event(1, "Book", "b1", "insert", {"id": "b1"}), model)
        assert await plugin.handle(Event(2, "Book", "b2", "insert", {"id": "b2"}), model)
        assert not await plugin.handle(Event(3, "Book", "b1", "update", {"id": "b1"}), model)
        assert await plugin.handle(Event(4, "Author", "a1", "update", {"id": "a1"}), model)
        assert model.documents == {"books": {"count": 2}, "a1": {"op": "update"}}
        assert await plugin.handle(Event(5, "Author", "a1", "delete", None, {"id": "a1"}), model)
        assert "a1" not in model.documents

    asyncio.run(scenario())


def test_a_memory_read_model_hands_out_copies():
    async def scenario():
        model = MemoryReadModel({"k": {"tags": ["a"]}})
        found = await model.get("k")
        found["tags"].append("b")
        assert model.documents == {"k": {"tags": ["a"]}}
        assert await model.get("missing") is None
        model.delete("missing")  # nothing there: nothing happens

    asyncio.run(scenario())


def test_an_event_names_itself_for_errors():
    event = Event(42, "Loan", "l1", "update", {}, {}, command_id="c-1")
    assert str(event) == "change 42 (update of Loan 'l1', command c-1)"


def test_a_projection_takes_projection_plugins_only():
    library = load_topology(REPO / "examples" / "library" / "topology.yaml")
    loans = library.nodes["loans"]
    assert load_plugin_class(PluginRef("projections.LoansPerMember"), loans, library).kind == (
        "projection"
    )
    with pytest.raises(PluginError, match="is a gateway plugin; a projection node takes"):
        load_plugin_class(PluginRef("plugins.contacts.NameRules"), loans, library)
