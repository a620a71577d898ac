"""Loading plugins: dotted paths, entry points, and the errors that name the plugin."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from cqrs_flow.plugins import (
    ENTRY_POINT_GROUP,
    GatewayPlugin,
    PluginError,
    ReaderPlugin,
    load_plugin_class,
)
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
